/* The weed cover of the boxes shown: the server's figure for the set of boxes above the slider. */

import { readError } from "./api.js";
import { askForKey, keyWaiter } from "./auth.js";
import { BUSY_RETRIES, WEED_CLASSES, retryAfterSeconds, sleep, state } from "./state.js";
import { showCounts, updateTotals } from "./table.js";
import { detectUrl, postPhoto, pump } from "./uploads.js";

export function coversFor(photo, shown) {
  if (photo.mode === "green" || shown === photo.dets.length) return answerCovers(photo.answer);
  let weeds = 0;
  for (let i = 0; i < shown; i += 1) if (WEED_CLASSES.has(photo.dets[i].class_name)) weeds += 1;
  if (!weeds) return { plant: 0, box: 0 };
  return photo.coverMemo.get(shown);   // undefined: not known yet; null: the server failed
}

function answerCovers(answer) {
  return { plant: answer.weed_cover, box: answer.weed_box_cover };
}

export function setCovers(photo, covers) {   // undefined and null (not known, failed) pass through
  photo.cover = covers ? covers.plant : covers;
  photo.boxCover = covers ? covers.box : covers;
}

let coverTimer = null;
export function scheduleCovers() {
  clearTimeout(coverTimer);
  coverTimer = setTimeout(() => {
    for (const photo of state.photos) {
      if (photo.removed || !photo.answer || photo.cover !== undefined) continue;
      if (photo.coverQueued.has(photo.visible)) continue;
      photo.coverQueued.add(photo.visible);
      state.coverQueue.push({ photo, shown: photo.visible, generation: photo.generation });
    }
    pump();
  }, 500);
}

export async function fetchCover(job) {
  const { photo, shown } = job;
  const current = () => !photo.removed && photo.generation === job.generation;
  if (!current() || photo.coverMemo.has(shown)) return;
  if (photo.visible !== shown) {          // the slider moved on; the new position asks for itself
    photo.coverQueued.delete(shown);
    return;
  }
  // Just below the weakest box shown (confidences come rounded to 4 places; the server keeps
  // the boxes scoring above conf), so that the server keeps exactly the boxes the page shows.
  const conf = Math.max(0, photo.dets[shown - 1].confidence - 0.00005).toFixed(5);
  let busy = 0;
  let value = null;
  for (;;) {
    if (keyWaiter) await keyWaiter.promise;
    if (!current()) return;
    let response;
    try {
      response = await postPhoto(photo, detectUrl(conf));
    } catch {
      break;
    }
    if (response.ok) {
      const answer = await response.json();
      if (!current()) return;
      const got = (answer.detections || []).length;
      photo.coverMemo.set(got, answerCovers(answer));
      if (got === shown) value = answerCovers(answer);
      break;
    }
    if (response.status === 401) {
      await askForKey((await readError(response)).message);
      continue;
    }
    if (response.status === 503 && busy < BUSY_RETRIES) {
      busy += 1;
      await sleep(retryAfterSeconds(response) * 1000);
      continue;
    }
    break;
  }
  if (!current()) return;
  if (!photo.coverMemo.has(shown) || value === null) photo.coverMemo.set(shown, value);
  photo.coverQueued.delete(shown);
  if (photo.visible === shown) {
    setCovers(photo, value);
    showCounts(photo);
    updateTotals();
  }
}
