/* Weed cover at any threshold, measured in the page from the plant mask the server sends once
 * (/v1/detect?vegetation_mask=true), the way serving/result.py measures `weed_cover`: the share of
 * the mask's pixels that are plant, inside a weed box and in no crop box, the boxes (as the answer
 * sends them) scaled to the mask and their edges at floor(v + 0.5). So moving the slider sends
 * nothing, and the page shows the server's figure for the boxes it shows. */

import { WEED_CLASSES } from "./state.js";

/** The mask of an answer's `vegetation_mask` ({width, height, counts}: run lengths, row-major,
 * alternating 0 and 1 from a run of 0s): {width, height, pixels: Uint8Array of 0/1, plants}.
 * Throws when the runs do not fill the mask exactly. */
export function decodeRuns(runs) {
  const { width, height, counts } = runs || {};
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1
      || !Array.isArray(counts)) {
    throw new Error("not a run-length mask");
  }
  const pixels = new Uint8Array(width * height);
  let at = 0;
  let plants = 0;
  for (let i = 0; i < counts.length; i += 1) {
    const run = counts[i];
    if (!Number.isInteger(run) || run < 0 || at + run > pixels.length) {
      throw new Error(`run ${i} (${run}) does not fit the ${width}x${height} mask`);
    }
    if (i % 2 === 1) {
      pixels.fill(1, at, at + run);
      plants += run;
    }
    at += run;
  }
  if (at !== pixels.length) throw new Error(`the runs cover ${at} of ${pixels.length} pixels`);
  return { width, height, pixels, plants };
}

const cell = (value) => Math.floor(value + 0.5);

/** Marks (1) the mask cells under any of the boxes (pixels of an image of `image` size). */
export function boxRaster(boxes, mask, image) {
  const inside = new Uint8Array(mask.width * mask.height);
  const fx = mask.width / image.width;
  const fy = mask.height / image.height;
  for (const { x1, y1, x2, y2 } of boxes) {
    const c0 = Math.max(0, cell(x1 * fx));
    const c1 = Math.min(mask.width, cell(x2 * fx));
    const r0 = Math.max(0, cell(y1 * fy));
    const r1 = Math.min(mask.height, cell(y2 * fy));
    for (let r = r0; r < r1; r += 1) if (c1 > c0) inside.fill(1, r * mask.width + c0, r * mask.width + c1);
  }
  return inside;
}

/** Plant area: the share of the mask's pixels that are plant under a weed box and no other box. */
export function plantCover(mask, image, weedBoxes, otherBoxes) {
  if (!weedBoxes.length || !mask.pixels.length) return 0;
  const weed = boxRaster(weedBoxes, mask, image);
  const other = otherBoxes.length ? boxRaster(otherBoxes, mask, image) : null;
  let count = 0;
  for (let i = 0; i < weed.length; i += 1) {
    if (weed[i] && mask.pixels[i] && !(other && other[i])) count += 1;
  }
  return count / mask.pixels.length;
}

/** Exact area of the union of boxes (coordinate compression), as serving/geometry.py. */
export function unionArea(boxes) {
  if (!boxes.length) return 0;
  const xs = [...new Set(boxes.flatMap((b) => [b.x1, b.x2]))].sort((a, b) => a - b);
  const ys = [...new Set(boxes.flatMap((b) => [b.y1, b.y2]))].sort((a, b) => a - b);
  const covered = new Uint8Array(xs.length * ys.length);
  for (const b of boxes) {
    for (let j = ys.indexOf(b.y1); j < ys.indexOf(b.y2); j += 1) {
      for (let i = xs.indexOf(b.x1); i < xs.indexOf(b.x2); i += 1) covered[j * xs.length + i] = 1;
    }
  }
  let area = 0;
  for (let j = 0; j + 1 < ys.length; j += 1) {
    for (let i = 0; i + 1 < xs.length; i += 1) {
      if (covered[j * xs.length + i]) area += (xs[i + 1] - xs[i]) * (ys[j + 1] - ys[j]);
    }
  }
  return area;
}

/** Both cover figures of the `shown` strongest boxes: {plant, box}; plant is null when the answer
 * came without a mask (a server too old to send one) and fewer boxes than it counted are shown. */
export function coversAt(photo, shown) {
  const { answer } = photo;
  if (photo.mode === "green" || shown === photo.dets.length) {
    return { plant: answer.weed_cover, box: answer.weed_box_cover };
  }
  const weeds = [];
  const others = [];
  for (let i = 0; i < shown; i += 1) {
    (WEED_CLASSES.has(photo.dets[i].class_name) ? weeds : others).push(photo.dets[i].box);
  }
  const { width, height } = answer.image;
  const box = weeds.length ? unionArea(weeds) / (width * height) : 0;
  if (!weeds.length) return { plant: 0, box };
  if (!photo.mask) return { plant: null, box };
  return { plant: plantCover(photo.mask, answer.image, weeds, others), box };
}
