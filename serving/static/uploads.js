/* Sending the photos to /v1/detect: each photo once, at the slider's floor and with the plant
 * mask (the slider then filters in the page, and cover.js measures the cover), a few at a time,
 * retries on 503; and the progress line. */

import { plural, readError } from "./api.js";
import { askForKey, authHeaders, keyWaiter } from "./auth.js";
import { readSlider } from "./controls.js";
import { fail, resetPhoto, setPhotoStatus } from "./photos.js";
import { succeed } from "./results.js";
import { BUSY_RETRIES, CONCURRENCY, el, floor, retryAfterSeconds, sleep, state } from "./state.js";
import { buildSummaryHead } from "./table.js";

export function pump() {
  while (state.active < CONCURRENCY && state.queue.length) {
    const photo = state.queue.shift();
    if (photo.removed) continue;
    state.active += 1;
    analyse(photo)
      .catch((error) => fail(photo, `Something went wrong in the page: ${error.message || error}`, true))
      .finally(() => {
        state.active -= 1;
        updateProgress();
        pump();
      });
  }
}

// POST a photo as multipart field `image` (the page's only way to send one).
export function postPhoto(photo, url) {
  const form = new FormData();
  form.append("image", photo.file, photo.name);
  return fetch(url, { method: "POST", body: form, headers: authHeaders(), cache: "no-store" });
}

export function detectUrl(conf) {
  const params = new URLSearchParams({ conf: String(conf), vegetation_mask: "true" });
  if (state.mode === "green") params.set("mode", "green");
  else if (state.chosenModel) params.set("model", state.chosenModel);
  return `/v1/detect?${params}`;
}

async function analyse(photo) {
  await state.modelLoaded;
  let busy = 0;
  const generation = photo.generation;
  const stale = () => photo.removed || photo.generation !== generation;
  for (;;) {
    if (keyWaiter) await keyWaiter.promise;
    if (stale()) return;
    setPhotoStatus(photo, "analysing");
    updateProgress();
    let response;
    try {
      response = await postPhoto(photo, detectUrl(floor));
    } catch {
      if (stale()) return;
      fail(photo, "Could not reach the server. Check the connection, then try again.", true,
           "no connection");
      return;
    }
    if (stale()) return;
    if (response.ok) {
      const answer = await response.json();
      if (!stale()) succeed(photo, answer);
      return;
    }
    const error = await readError(response);
    if (response.status === 401) {
      setPhotoStatus(photo, "queued", "Waiting for the API key");
      await askForKey(error.message);
      continue;
    }
    if (response.status === 503 && busy < BUSY_RETRIES) {
      busy += 1;
      const wait = retryAfterSeconds(response);
      setPhotoStatus(photo, "busy", `Server busy, retrying in ${Math.ceil(wait)} s`);
      await sleep(wait * 1000);
      continue;
    }
    fail(photo, describeError(response.status, error), response.status === 503,
         shortReason(response.status));
    return;
  }
}

function shortReason(status) {
  return { 400: "not an image", 401: "API key", 413: "too big", 415: "file type",
           503: "server busy" }[status] || `error ${status}`;
}

function describeError(status, error) {
  const code = error.code || "";
  const detail = error.message ? ` (server: ${error.message})` : "";
  if (status === 400) {
    return "This file could not be read as an image. It may be damaged or not a photo.";
  }
  if (status === 413 && code === "too_many_pixels") {
    return "This photo has too many pixels for the server. Make it smaller and add it again.";
  }
  if (status === 413) {
    const match = /limit(?: of| is)? (\d+) bytes/.exec(error.message || "");
    const limit = match ? ` (the limit is ${(Number(match[1]) / 1048576).toFixed(1)} MB)` : "";
    return `This file is too big for the server${limit}. Make it smaller and add it again.`;
  }
  if (status === 415) return "This file type is not supported. Use JPEG, PNG, WebP or TIFF.";
  if (status === 503) return "The server is busy. Wait a moment, then try this photo again.";
  if (status === 401) return "The API key was not accepted.";
  return `The server could not analyse this photo (error ${status})${detail}.`;
}

export function analyseAgain() {
  for (const photo of state.photos) {
    if (photo.removed || !photo.url) continue;
    resetPhoto(photo);
    if (!state.queue.includes(photo)) state.queue.push(photo);
  }
  buildSummaryHead();
  readSlider();
  updateProgress(true);
  pump();
}

let lastStatusAt = 0;
let statusTimer = null;

export function setStatusText(text) {
  el.status.textContent = text;
}

export function updateProgress(immediate = false) {
  const photos = state.photos.filter((p) => !p.removed);
  const total = photos.length;
  const done = photos.filter((p) => p.status === "done").length;
  const failed = photos.filter((p) => p.status === "failed").length;
  const finished = done + failed;
  el.progress.hidden = total === 0 || finished === total;
  el.progress.max = Math.max(total, 1);
  el.progress.value = finished;
  let text;
  if (total === 0) text = "No photos yet.";
  else if (keyWaiter) text = "Waiting for the API key…";
  else if (finished < total) {
    text = `Analysing photos: ${finished} of ${total} finished`
      + (failed ? `, ${failed} failed.` : ".");
  } else {
    text = `Finished: ${plural(done, "photo", "photos")} analysed`
      + (failed ? `, ${failed} failed — see the messages below.` : ".");
  }
  el.status.dataset.state = total && finished === total ? "finished" : "working";
  // Screen readers hear the news at most every 2 s while work goes on; the end at once.
  const now = Date.now();
  clearTimeout(statusTimer);
  if (immediate || finished === total || now - lastStatusAt > 2000) {
    lastStatusAt = now;
    setStatusText(text);
  } else {
    statusTimer = setTimeout(() => updateProgress(true), 2000 - (now - lastStatusAt));
  }
}
