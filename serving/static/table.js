/* The summary table: a row per photo, a column per class and the cover, the totals; the column
 * titles follow the mode (green-on-brown counts plants and their cover, not weeds). */

import { plural } from "./api.js";
import { setPhotoStatus } from "./photos.js";
import { el, formatCover, state } from "./state.js";
import { renderSessions } from "./sessions.js";
import { currentPhoto, fillViewerInfo } from "./viewer.js";

export function columnLabel(name) {
  const label = { crop: "Crops", weed: "Weeds", plant: "Plants" }[name] || name;
  return label.charAt(0).toUpperCase() + label.slice(1);
}

/** "Weed cover", or "Plant cover" in green-on-brown mode. */
export function coverTitle() {
  return state.mode === "green" ? "Plant cover" : "Weed cover";
}

export function buildSummaryHead() {
  const cells = ["Photo", ...state.classes.map(columnLabel), coverTitle(), "Status"];
  el.summaryHead.replaceChildren(...cells.map((text, i) => {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = text;
    if (i > 0 && i < cells.length - 1) th.className = "num";
    return th;
  }));
  for (const photo of state.photos) {
    buildRowCells(photo);
    if (photo.answer) showCounts(photo);
  }
  updateTotals();
}

export function buildRow(photo) {
  const row = document.createElement("tr");
  row.dataset.file = photo.name;
  photo.row = row;
  buildRowCells(photo);
  el.summaryBody.append(row);
}

export function buildRowCells(photo) {
  const nameCell = document.createElement("th");
  nameCell.scope = "row";
  const link = document.createElement("a");
  link.href = `#photo-${photo.id}`;
  link.textContent = photo.name;
  nameCell.append(link);
  photo.cells = {};
  const cells = [nameCell];
  for (const name of state.classes) {
    const td = document.createElement("td");
    td.className = "num";
    td.dataset.col = name;
    photo.cells[name] = td;
    cells.push(td);
  }
  photo.cells.cover = document.createElement("td");
  photo.cells.cover.className = "num";
  photo.cells.cover.dataset.col = "weed_cover";
  photo.cells.status = document.createElement("td");
  photo.cells.status.dataset.col = "status";
  cells.push(photo.cells.cover, photo.cells.status);
  photo.row.replaceChildren(...cells);
  if (photo.status === "failed") for (const td of cells.slice(1, -1)) td.textContent = "–";
  setPhotoStatus(photo, photo.status, photo.statusText);
}

export function showCounts(photo) {
  photo.countsShownFor = photo.visible;
  const parts = state.classes.map((name) => {
    const n = photo.counts[name] || 0;
    if (name === "crop") return plural(n, "crop", "crops");
    if (name === "weed") return plural(n, "weed", "weeds");
    if (name === "plant") return plural(n, "plant", "plants");
    return `${n}\u00a0${name}`;
  });
  parts.push(`${coverTitle().toLowerCase().replace(" ", "\u00a0")}\u00a0${formatCover(photo.cover)}`);
  photo.countsText.textContent = parts.join(" · ");
  for (const name of state.classes) {
    if (photo.cells[name]) photo.cells[name].textContent = String(photo.counts[name] || 0);
  }
  photo.cells.cover.textContent = formatCover(photo.cover);
  photo.cells.cover.dataset.state = photo.cover === undefined ? "pending" : "known";
  photo.cells.cover.title = photo.cover === null ? "The server sent no plant mask to measure it on" : "";
  if (currentPhoto() === photo) fillViewerInfo(photo);
  photo.card.dataset.visible = String(photo.visible);
}

export function updateTotals() {
  const done = state.photos.filter((p) => p.answer && !p.removed);
  el.csv.disabled = done.length === 0;
  el.json.disabled = done.length === 0;
  el.geojson.disabled = !done.some((p) => p.answer.gps);
  renderSessions();
  if (!done.length) {
    el.summaryFoot.hidden = true;
    return;
  }
  const cells = [];
  const label = document.createElement("th");
  label.scope = "row";
  label.textContent = `All ${plural(done.length, "photo", "photos")}`;
  cells.push(label);
  for (const name of state.classes) {
    const td = document.createElement("td");
    td.className = "num";
    td.textContent = String(done.reduce((sum, p) => sum + (p.counts[name] || 0), 0));
    cells.push(td);
  }
  const cover = document.createElement("td");
  cover.className = "num";
  cover.textContent = meanCoverText(done);
  cells.push(cover, document.createElement("td"));
  const row = document.createElement("tr");
  row.append(...cells);
  el.summaryFoot.replaceChildren(row);
  el.summaryFoot.hidden = false;
}

/** "mean 3.2 %" of the photos' covers ("–" when none could be measured). */
export function meanCoverText(photos) {
  const known = photos.filter((p) => Number.isFinite(p.cover));
  if (!known.length) return formatCover(photos.length ? null : undefined);
  return `mean\u00a0${formatCover(known.reduce((sum, p) => sum + p.cover, 0) / known.length)}`;
}
