/* A photo on the page: adding it (checks before sending), its card and its status, and the
 * message when it failed. Each time photos are added they form an upload session (a field walk). */

import { hoverLabels } from "./boxes.js";
import { downloadPng } from "./downloads.js";
import { checkImage } from "./results.js";
import { el, state } from "./state.js";
import { buildRow } from "./table.js";
import { pump, updateProgress } from "./uploads.js";
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
  photo.mask = null;
  photo.judgement = null;
  photo.countsShownFor = undefined;
  photo.svg.replaceChildren();
  photo.countsText.textContent = "";
  photo.modelText.hidden = true;
  photo.warningText.hidden = true;
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
  const session = { id: state.sessions.length + 1, started: new Date() };
  state.sessions.push(session);
  for (const file of list) {
    const photo = {
      id: state.nextId++, file, name: file.name || "photo", status: "queued", session,
      url: null, answer: null, dets: [], boxes: [], visible: -1, counts: {}, cover: undefined,
      boxCover: undefined, imageReady: false, imageFailed: false, judgement: null,
      serverCopyTried: false, removed: false, generation: 0, mask: null,
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
  photo.warningText = item.querySelector(".photo-warning");
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

