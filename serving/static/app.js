/* weedscan web page, the entry module: adding photos (picker, drag and drop), clearing, and
 * starting the page. Photos go to this server's /v1/detect (model or green-on-brown mode); the
 * boxes are filtered in the page with a confidence slider. Plain ES modules served as they are,
 * no build step, no dependencies, nothing fetched from anywhere but this server. */

import { buildLegend, loadModel } from "./models.js";
import { setupSlider } from "./controls.js";
import { buildSummaryHead } from "./table.js";
import { addFiles } from "./photos.js";
import { el, state } from "./state.js";
import { updateTotals } from "./table.js";
import { updateProgress } from "./uploads.js";

// ---- clearing ----------------------------------------------------------------------------
el.clear.addEventListener("click", () => {
  for (const photo of state.photos) {
    photo.removed = true;
    if (photo.url) URL.revokeObjectURL(photo.url);
  }
  state.photos = [];
  state.queue = [];
  el.photos.replaceChildren();
  el.summaryBody.replaceChildren();
  el.clear.disabled = true;
  updateTotals();
  updateProgress(true);
  el.fileInput.focus();
});

// ---- file picker and drag and drop -------------------------------------------------------
el.fileInput.addEventListener("change", () => {
  addFiles(el.fileInput.files);
  el.fileInput.value = "";   // the same photo can be added again
});

let dragDepth = 0;
const hasFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");
window.addEventListener("dragenter", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  dragDepth += 1;
  el.dropZone.classList.add("dragging");
});
window.addEventListener("dragover", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = "copy";
});
window.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) el.dropZone.classList.remove("dragging");
});
window.addEventListener("drop", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();   // the browser would otherwise open the photo and leave the page
  dragDepth = 0;
  el.dropZone.classList.remove("dragging");
  addFiles(event.dataTransfer.files);
});

state.modelLoaded = loadModel();
setupSlider();
buildLegend();
buildSummaryHead();
updateProgress(true);
