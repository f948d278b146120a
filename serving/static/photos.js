/* A photo on the page: its card, its status, its answer and the boxes shown at the threshold. */

import { drawSvgBoxes, hoverLabels } from "./boxes.js";
import { coversFor, scheduleCovers, setCovers } from "./cover.js";
import { downloadPng } from "./downloads.js";
import { readGps, showGps } from "./gps.js";
import { showMaskOn } from "./mask.js";
import { el, state, threshold } from "./state.js";
import { buildRow, showCounts, updateTotals } from "./table.js";
import { postPhoto, pump, updateProgress } from "./uploads.js";
import { openViewer } from "./viewer.js";

export function resetPhoto(photo) {
  photo.generation += 1;
  photo.answer = null;
  photo.dets = [];
  photo.boxes = [];
  photo.visible = -1;
  photo.counts = {};
  photo.cover = undefined;
  photo.boxCover = undefined;
  photo.coverMemo = new Map();
  photo.coverQueued = new Set();
  photo.countsShownFor = undefined;
  photo.svg.replaceChildren();
  photo.countsText.textContent = "";
  photo.modelText.hidden = true;
  photo.errorText.textContent = "";
  photo.card.classList.remove("has-error");
  photo.openButton.disabled = true;
  photo.pngButton.disabled = true;
  setPhotoStatus(photo, "queued");
}

function precheck(file) {
  const type = (file.type || "").toLowerCase();
  const name = (file.name || "").toLowerCase();
  if (file.size === 0) return "This file is empty.";
  if (/\.(heic|heif)$/.test(name) || type === "image/heic" || type === "image/heif") {
    return "HEIC photos are not supported. Save or export the photo as JPEG and add it again.";
  }
  if (type && !type.startsWith("image/")) {
    return "This is not an image. Add JPEG, PNG, WebP or TIFF photos.";
  }
  return null;
}

export function addFiles(files) {
  const list = Array.from(files || []);
  if (!list.length) return;
  for (const file of list) {
    const photo = {
      id: state.nextId++, file, name: file.name || "photo", status: "queued",
      url: null, answer: null, dets: [], boxes: [], visible: -1, counts: {}, cover: undefined,
      boxCover: undefined, coverMemo: new Map(), coverQueued: new Set(), imageReady: false, imageFailed: false,
      serverCopyTried: false, removed: false, generation: 0, gps: null, mask: null,
    };
    state.photos.push(photo);
    buildCard(photo);
    buildRow(photo);
    const problem = precheck(file);
    if (problem) {
      fail(photo, problem, false, "not an image");
      continue;
    }
    photo.url = URL.createObjectURL(file);
    photo.img.src = photo.url;
    readGps(file).then((fix) => showGps(photo, fix));
    state.queue.push(photo);
    setPhotoStatus(photo, "queued");
  }
  el.clear.disabled = false;
  updateProgress(true);
  pump();
}

function buildCard(photo) {
  const item = el.template.content.firstElementChild.cloneNode(true);
  item.id = `photo-${photo.id}`;
  item.dataset.file = photo.name;
  photo.card = item;
  photo.img = item.querySelector("img");
  photo.svg = item.querySelector("svg");
  photo.badge = item.querySelector(".badge");
  photo.countsText = item.querySelector(".photo-counts");
  photo.modelText = item.querySelector(".photo-model");
  photo.errorText = item.querySelector(".photo-error");
  photo.pngButton = item.querySelector(".photo-png");
  photo.openButton = item.querySelector(".photo-open");
  photo.gpsText = item.querySelector(".photo-gps");
  photo.maskCanvas = item.querySelector("canvas.mask");
  photo.label = item.querySelector(".box-label");
  photo.figure = item.querySelector(".figure");
  item.querySelector(".photo-name").textContent = photo.name;
  photo.img.alt = `Photo ${photo.name}`;
  photo.pngButton.setAttribute("aria-label", `Download ${photo.name} with boxes as PNG`);
  photo.openButton.setAttribute("aria-label", `View ${photo.name} large`);
  photo.openButton.addEventListener("click", () => openViewer(photo, photo.openButton));
  photo.figure.addEventListener("click", () => {
    if (photo.answer) openViewer(photo, photo.openButton);
  });
  hoverLabels(photo.svg, photo.label, () => photo);
  photo.img.addEventListener("load", () => {
    photo.imageReady = true;
    photo.imageFailed = false;
    checkImage(photo);
  });
  photo.img.addEventListener("error", () => {
    photo.imageReady = false;
    photo.imageFailed = true;
    if (photo.serverCopyTried) photo.card.classList.add("no-preview");
    checkImage(photo);
  });
  photo.pngButton.addEventListener("click", () => downloadPng(photo));
  el.photos.append(item);
}

export const STATUS_TEXT = {
  queued: "Waiting", analysing: "Analysing…", busy: "Server busy", done: "Done", failed: "Failed",
};

export function setPhotoStatus(photo, status, text) {
  photo.status = status;
  photo.statusText = text;
  photo.card.dataset.status = status;
  const label = text || STATUS_TEXT[status] || status;
  photo.badge.textContent = status === "done" ? "" : label;
  photo.badge.hidden = status === "done";
  photo.cells.status.textContent = status === "failed" && photo.failedReason
    ? `Failed (${photo.failedReason})` : label;
  photo.row.dataset.status = status;
}

export function fail(photo, message, retryable, reason) {
  photo.failedMessage = message;
  photo.failedReason = reason || "";
  setPhotoStatus(photo, "failed");
  photo.errorText.textContent = message;
  photo.card.classList.add("has-error");
  photo.countsText.textContent = "";
  for (const name of state.classes) photo.cells[name].textContent = "–";
  photo.cells.cover.textContent = "–";
  photo.cells.cover.dataset.state = "";
  photo.openButton.disabled = true;
  photo.img.alt = `Photo ${photo.name} (not analysed)`;
  if (retryable && photo.url) {
    const again = document.createElement("button");
    again.type = "button";
    again.className = "button small";
    again.textContent = "Try again";
    again.setAttribute("aria-label", `Try ${photo.name} again`);
    again.addEventListener("click", () => {
      again.remove();
      photo.errorText.textContent = "";
      photo.card.classList.remove("has-error");
      setPhotoStatus(photo, "queued");
      state.queue.push(photo);
      updateProgress(true);
      pump();
    });
    photo.errorText.append(" ", again);
  }
  updateProgress();
}

export function succeed(photo, answer) {
  photo.answer = answer;
  photo.mode = state.mode;
  photo.dets = (answer.detections || []).slice().sort((a, b) => b.confidence - a.confidence);
  const { width, height } = answer.image;
  photo.figure.style.aspectRatio = `${width} / ${height}`;
  photo.boxes = drawSvgBoxes(photo.svg, photo, false);
  photo.visible = photo.boxes.length;
  photo.pngButton.disabled = false;
  photo.openButton.disabled = false;
  photo.img.alt = `Photo ${photo.name} with detected boxes`;
  const by = answer.model || {};
  photo.modelText.textContent = `Answered by ${by.name || "?"}${by.version ? ` ${by.version}` : ""}`;
  photo.modelText.hidden = false;
  setPhotoStatus(photo, "done");
  applyThreshold(photo);
  updateTotals();
  updateProgress();
  checkImage(photo);
  if (state.showMask) showMaskOn(photo);
}

// One <g class="box"> per detection: a dark halo under a coloured line. The returned array is
// in the order of photo.dets (strongest first); in the SVG the biggest boxes come first, so

async function checkImage(photo) {
  if (!photo.answer || photo.serverCopyTried) return;
  const { width, height } = photo.answer.image;
  const mismatch = photo.imageReady
    && (photo.img.naturalWidth !== width || photo.img.naturalHeight !== height);
  if (!photo.imageFailed && !mismatch) return;
  photo.serverCopyTried = true;
  try {
    const response = await postPhoto(photo, "/v1/annotate?conf=1&format=png");
    if (!response.ok || photo.removed) throw new Error(String(response.status));
    const copy = URL.createObjectURL(await response.blob());
    if (photo.url) URL.revokeObjectURL(photo.url);
    photo.url = copy;
    photo.img.src = copy;
    photo.maskPromise = null;              // the mask is computed from what is shown
    if (state.showMask) showMaskOn(photo);
  } catch {
    photo.card.classList.add("no-preview");
    photo.pngButton.disabled = true;
  }
}

function countAtLeast(dets, threshold) {
  // dets sorted by confidence, highest first: binary search for the first one below.
  let lo = 0;
  let hi = dets.length;
  const limit = threshold - 1e-9;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (dets[mid].confidence >= limit) lo = mid + 1; else hi = mid;
  }
  return lo;
}

export function applyThreshold(photo) {
  const shown = countAtLeast(photo.dets, threshold());
  if (shown !== photo.visible) {
    const from = Math.min(shown, photo.visible);
    const to = Math.max(shown, photo.visible);
    for (let i = from; i < to; i += 1) photo.boxes[i].toggleAttribute("hidden", i >= shown);
    photo.visible = shown;
  } else if (photo.countsShownFor === shown) {
    return;
  }
  const counts = Object.fromEntries(state.classes.map((name) => [name, 0]));
  for (let i = 0; i < shown; i += 1) {
    const name = photo.dets[i].class_name;
    counts[name] = (counts[name] || 0) + 1;
  }
  photo.counts = counts;
  setCovers(photo, coversFor(photo, shown));
  if (photo.cover === undefined) scheduleCovers();
  showCounts(photo);
}

// The weed cover is the server's figure (plant area: vegetation pixels inside weed boxes and
// in no crop box, serving/result.py), never one of the page's own. The server measures it for
// the boxes above the confidence it was asked for: the first answer (at the slider's floor)
// gives it for all the boxes; for fewer boxes the page asks again once the slider rests
// (sending the photo again: the API does not return the vegetation mask it would need) and
// keeps each answer for that set of boxes.

// The boxes shown at the slider's threshold (review mode starts from them).
export function shownBoxes(photo) {
  return photo.dets.slice(0, Math.max(0, photo.visible));
}
