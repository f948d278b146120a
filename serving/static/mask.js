/* The vegetation mask overlay: the plant pixels of the coarse mask the server measures the weed
 * cover on (sent once with the answer, cover.js decodes it), stretched over the photo. */

import { el, state } from "./state.js";
import { currentPhoto } from "./viewer.js";

const MASK_RGBA = [0, 229, 255, 150];             // plant pixels of the vegetation overlay

function paintMask(canvas, mask) {
  if (!mask.image) {
    const rgba = new Uint8ClampedArray(mask.pixels.length * 4);
    for (let i = 0; i < mask.pixels.length; i += 1) if (mask.pixels[i]) rgba.set(MASK_RGBA, i * 4);
    mask.image = new ImageData(rgba, mask.width, mask.height);
  }
  canvas.width = mask.width;
  canvas.height = mask.height;
  canvas.getContext("2d").putImageData(mask.image, 0, 0);
  canvas.dataset.plantPixels = String(mask.plants);
  canvas.dataset.size = `${mask.width}x${mask.height}`;
  canvas.dataset.ready = "true";
}

export function showMaskOn(photo) {
  if (!photo.answer || !photo.mask || photo.removed) return;
  paintMask(photo.maskCanvas, photo.mask);
  photo.maskCanvas.hidden = !state.showMask;
  if (currentPhoto() === photo) {
    paintMask(el.viewerMask, photo.mask);
    el.viewerMask.hidden = !state.showMask;
  }
}

function setShowMask(on) {
  state.showMask = on;
  for (const box of el.maskToggles) box.checked = on;
  document.body.classList.toggle("show-mask", on);
  for (const photo of state.photos) {
    if (on) showMaskOn(photo);
    else photo.maskCanvas.hidden = true;
  }
  const viewing = currentPhoto();
  if (viewing && on) showMaskOn(viewing);
  else el.viewerMask.hidden = true;
}

for (const box of el.maskToggles) box.addEventListener("change", () => setShowMask(box.checked));
