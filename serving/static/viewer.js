/* The photo large, in a dialog. */

import { drawSvgBoxes, hoverLabels } from "./boxes.js";
import { gpsText } from "./gps.js";
import { showMaskOn } from "./mask.js";
import { el, state } from "./state.js";

export let viewing = null;
let viewerOpener = null;

export function openViewer(photo, opener) {
  if (!photo.answer || !photo.url) return;
  viewing = photo;
  viewerOpener = opener;
  const { width, height } = photo.answer.image;
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
  if (!el.viewer.open) el.viewer.showModal();
  el.viewerClose.focus();
  document.dispatchEvent(new CustomEvent("weedscan:viewer-open", { detail: { photo } }));
}

export function fillViewerInfo(photo) {
  el.viewerCounts.textContent = photo.countsText.textContent;
  el.viewerGps.textContent = photo.gps ? gpsText(photo.gps) : "";
  el.viewerGps.hidden = !photo.gps;
}

el.viewerClose.addEventListener("click", () => el.viewer.close());
el.viewer.addEventListener("click", (event) => {
  if (event.target === el.viewer) el.viewer.close();   // a click on the backdrop
});
el.viewer.addEventListener("close", () => {
  viewing = null;
  el.viewerSvg.replaceChildren();
  el.viewerLabel.hidden = true;
  if (viewerOpener && viewerOpener.isConnected) viewerOpener.focus();
});
hoverLabels(el.viewerSvg, el.viewerLabel, () => viewing);

