/* A photo's answer: its boxes drawn, the plant mask decoded, and at each slider position the
 * boxes shown, the counts, the cover (cover.js) and the reliability judgement (reliability.js). */

import { drawSvgBoxes } from "./boxes.js";
import { coversAt, decodeRuns } from "./cover.js";
import { showGps } from "./gps.js";
import { showMaskOn } from "./mask.js";
import { setPhotoStatus } from "./photos.js";
import { showJudgement } from "./reliability.js";
import { state, threshold } from "./state.js";
import { showCounts, updateTotals } from "./table.js";
import { postPhoto, updateProgress } from "./uploads.js";

export function succeed(photo, answer) {
  photo.answer = answer;
  photo.mode = state.mode;
  photo.dets = (answer.detections || []).slice().sort((a, b) => b.confidence - a.confidence);
  try {
    photo.mask = answer.vegetation_mask ? decodeRuns(answer.vegetation_mask) : null;
  } catch {
    photo.mask = null;     // a broken mask: the cover shows "–" below the full set of boxes
  }
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
  showGps(photo);
  setPhotoStatus(photo, "done");
  applyThreshold(photo);
  updateTotals();
  updateProgress();
  checkImage(photo);
  if (state.showMask) showMaskOn(photo);
}

// Chromium cannot show TIFF, and a browser may not apply EXIF rotation: then ask this server
// for a displayable copy (PNG, no boxes: conf=1 keeps none) so the boxes line up.
export async function checkImage(photo) {
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
  } catch {
    photo.card.classList.add("no-preview");
    photo.pngButton.disabled = true;
  }
}

function countAtLeast(dets, limit) {
  // dets sorted by confidence, highest first: binary search for the first one below.
  let lo = 0;
  let hi = dets.length;
  const floor = limit - 1e-9;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (dets[mid].confidence >= floor) lo = mid + 1; else hi = mid;
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
  const covers = coversAt(photo, shown);
  photo.cover = covers.plant;
  photo.boxCover = covers.box;
  showJudgement(photo);
  showCounts(photo);
}

/** The boxes shown at the slider's threshold (review mode starts from them). */
export function shownBoxes(photo) {
  return photo.dets.slice(0, Math.max(0, photo.visible));
}
