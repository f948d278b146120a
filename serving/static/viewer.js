/* The photo large, in a dialog: its boxes with their labels, the mask, where it was taken, the
 * warning when the model's answer is unreliable; zoom and pan (zoom.js); the previous and next
 * analysed photo with the buttons or the arrow keys. */

import { drawSvgBoxes, hoverLabels } from "./boxes.js";
import { gpsText } from "./gps.js";
import { showMaskOn } from "./mask.js";
import { el, state } from "./state.js";
import { createZoom } from "./zoom.js";

let viewing = null;
let viewerOpener = null;

const reviewing = () => el.viewerFigure.classList.contains("reviewing");
const zoom = createZoom(el.viewerStage, el.viewerFigure, () => !reviewing());

/** The photo in the large view, or null. */
export function currentPhoto() {
  return viewing;
}

const analysed = () => state.photos.filter((p) => p.answer && p.url && !p.removed);

export function openViewer(photo, opener) {
  if (!photo.answer || !photo.url) return;
  viewing = photo;
  if (opener) viewerOpener = opener;
  const { width, height } = photo.answer.image;
  zoom.reset();
  el.viewerTitle.textContent = photo.name;
  el.viewerImg.src = photo.url;
  el.viewerImg.alt = `Photo ${photo.name} with detected boxes`;
  el.viewerFigure.style.setProperty("--ar", String(width / height));
  el.viewerFigure.style.aspectRatio = `${width} / ${height}`;
  el.viewerLabel.hidden = true;
  const groups = drawSvgBoxes(el.viewerSvg, photo, true);
  groups.forEach((g, i) => g.toggleAttribute("hidden", i >= photo.visible));
  el.viewerMask.hidden = true;
  delete el.viewerMask.dataset.ready;
  if (state.showMask) showMaskOn(photo);
  fillViewerInfo(photo);
  el.viewer.dataset.file = photo.name;
  if (!el.viewer.open) {
    el.viewer.showModal();
    el.viewerClose.focus();
  }
  document.dispatchEvent(new CustomEvent("weedscan:viewer-open", { detail: { photo } }));
}

export function fillViewerInfo(photo) {
  el.viewerCounts.textContent = photo.countsText.textContent;
  const fix = photo.answer && photo.answer.gps;
  el.viewerGps.textContent = fix ? gpsText(fix) : "";
  el.viewerGps.hidden = !fix;
  el.viewerWarning.replaceChildren(...photo.warningText.cloneNode(true).childNodes);
  el.viewerWarning.hidden = photo.warningText.hidden;
  const list = analysed();
  const at = list.indexOf(photo);
  el.viewerPosition.textContent = at >= 0 ? `Photo ${at + 1} of ${list.length}` : "";
  el.viewerPrev.disabled = at <= 0;
  el.viewerNext.disabled = at < 0 || at >= list.length - 1;
}

/** Shows the analysed photo `step` places before (-1) or after (+1) the one shown. */
export function step(by) {
  const list = analysed();
  const next = list[list.indexOf(viewing) + by];
  if (!viewing || !next) return;
  const keep = document.activeElement;
  openViewer(next);
  if (keep && keep.isConnected && !keep.disabled) keep.focus();
  else el.viewerClose.focus();
}

el.viewerPrev.addEventListener("click", () => step(-1));
el.viewerNext.addEventListener("click", () => step(1));
el.zoomIn.addEventListener("click", () => zoom.zoomIn());
el.zoomOut.addEventListener("click", () => zoom.zoomOut());
el.zoomReset.addEventListener("click", () => zoom.reset());

el.viewer.addEventListener("keydown", (event) => {
  const target = event.target;
  if (event.altKey || event.ctrlKey || event.metaKey || reviewing()) return;   // the editor's keys
  if (target.closest && target.closest("input, select, textarea")) return;
  const actions = { ArrowLeft: () => step(-1), ArrowRight: () => step(1), "+": zoom.zoomIn, "=": zoom.zoomIn,
                    "-": zoom.zoomOut, 0: zoom.reset };
  const action = actions[event.key];
  if (!action) return;
  event.preventDefault();
  action();
});

el.viewerClose.addEventListener("click", () => el.viewer.close());
el.viewer.addEventListener("click", (event) => {
  if (event.target === el.viewer) el.viewer.close();   // a click on the backdrop
});
el.viewer.addEventListener("close", () => {
  viewing = null;
  zoom.reset();
  el.viewerSvg.replaceChildren();
  el.viewerLabel.hidden = true;
  if (viewerOpener && viewerOpener.isConnected) viewerOpener.focus();
  viewerOpener = null;
});
hoverLabels(el.viewerSvg, el.viewerLabel, () => viewing);
