/* The vegetation mask overlay. */

import { el, state, threshold } from "./state.js";
import { viewing } from "./viewer.js";

const MASK_RGBA = [0, 229, 255, 150];             // plant pixels of the vegetation overlay

// The API does not return its vegetation mask (/v1/detect answers the numbers, /v1/annotate
// draws boxes only), so the page computes the same one in the browser from the photo it shows,
// as serving/vegetation.py does for the weed cover: the photo shrunk by a whole factor to a long
// side of at most 512 (block means), ExG = 2g - r - b on chromatic coordinates, Otsu's threshold
// on ExG scaled to 0-255 over [-1, 2], never below 0.05 (bare soil stays empty). The browser
// decodes the photo itself, so a few pixels may differ from the server's mask; in green-on-brown
// mode the server also drops regions under its min_area, which this overlay still shows.
const MASK_SIDE = 512;
const EXG_LO = -1;
const EXG_HI = 2;
const EXG_FLOOR = 0.05;

async function computeMask(photo) {
  const image = new Image();
  image.src = photo.url;
  await image.decode();
  const W = image.naturalWidth;
  const H = image.naturalHeight;
  const factor = Math.max(W, H) > MASK_SIDE ? Math.ceil(Math.max(W, H) / MASK_SIDE) : 1;
  const w = Math.max(1, Math.round(W / factor));
  const h = Math.max(1, Math.round(H / factor));
  const canvas = document.createElement("canvas");
  canvas.width = W;
  canvas.height = H;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(image, 0, 0);
  const px = ctx.getImageData(0, 0, W, H).data;
  const index = new Float32Array(w * h);
  const hist = new Float64Array(256);
  const scale = 255 / (EXG_HI - EXG_LO);
  for (let y = 0; y < h; y += 1) {
    const y0 = y * factor;
    const y1 = Math.min(H, y0 + factor);
    for (let x = 0; x < w; x += 1) {
      const x0 = x * factor;
      const x1 = Math.min(W, x0 + factor);
      let r = 0; let g = 0; let b = 0;
      for (let yy = y0; yy < y1; yy += 1) {
        for (let xx = x0, o = (yy * W + x0) * 4; xx < x1; xx += 1, o += 4) {
          r += px[o]; g += px[o + 1]; b += px[o + 2];
        }
      }
      const n = Math.max(1, (y1 - y0) * (x1 - x0));
      r = Math.round(r / n); g = Math.round(g / n); b = Math.round(b / n);   // uint8 as OpenCV's
      const total = r + g + b || 1;
      const exg = Math.fround((2 * g - r - b) / total);
      index[y * w + x] = exg;
      hist[Math.min(255, Math.max(0, Math.floor((exg - EXG_LO) * scale)))] += 1;
    }
  }
  const level = otsuLevel(hist, w * h);
  const threshold = Math.max(EXG_LO + ((level + 1) * (EXG_HI - EXG_LO)) / 255, EXG_FLOOR);
  const rgba = new Uint8ClampedArray(w * h * 4);
  let plants = 0;
  for (let i = 0; i < w * h; i += 1) {
    if (index[i] > threshold) {
      plants += 1;
      rgba.set(MASK_RGBA, i * 4);
    }
  }
  return { width: w, height: h, threshold, plants, pixels: new ImageData(rgba, w, h) };
}

// OpenCV's Otsu (getThreshVal_Otsu_8u): the level with the largest between-class variance.
function otsuLevel(hist, count) {
  let mu = 0;
  for (let i = 0; i < 256; i += 1) mu += (i * hist[i]) / count;
  let q1 = 0; let mu1 = 0; let best = 0; let level = 0;
  for (let i = 0; i < 256; i += 1) {
    const p = hist[i] / count;
    mu1 *= q1;
    q1 += p;
    const q2 = 1 - q1;
    if (Math.min(q1, q2) < 1.1920929e-7 || Math.max(q1, q2) > 1 - 1.1920929e-7) continue;
    mu1 = (mu1 + i * p) / q1;
    const mu2 = (mu - q1 * mu1) / q2;
    const sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2);
    if (sigma > best) { best = sigma; level = i; }
  }
  return level;
}

let maskChain = Promise.resolve();   // one photo at a time: the page stays responsive
function ensureMask(photo) {
  if (!photo.maskPromise) {
    photo.maskPromise = maskChain = maskChain.then(() => computeMask(photo)).then((mask) => {
      photo.mask = mask;
      return mask;
    }, () => {
      photo.maskPromise = null;            // not decodable (yet): try again next time
      return null;
    });
  }
  return photo.maskPromise;
}

function paintMask(canvas, mask) {
  canvas.width = mask.width;
  canvas.height = mask.height;
  canvas.getContext("2d").putImageData(mask.pixels, 0, 0);
  canvas.dataset.threshold = mask.threshold.toFixed(6);
  canvas.dataset.plantPixels = String(mask.plants);
  canvas.dataset.size = `${mask.width}x${mask.height}`;
  canvas.dataset.ready = "true";
}

export async function showMaskOn(photo) {
  if (!photo.url || !photo.answer || photo.removed) return;
  const mask = await ensureMask(photo);
  if (!mask || photo.removed) return;
  paintMask(photo.maskCanvas, mask);
  photo.maskCanvas.hidden = !state.showMask;
  if (viewing === photo) {
    paintMask(el.viewerMask, mask);
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
  if (viewing && on) showMaskOn(viewing);
  else el.viewerMask.hidden = true;
}

for (const box of el.maskToggles) box.addEventListener("change", () => setShowMask(box.checked));
