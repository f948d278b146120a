/* weedscan web page: upload photos to this server's /v1/detect, draw the boxes, filter them
 * client-side with a confidence slider, and export the results (CSV, JSON, PNG).
 * Plain JS, no dependencies, nothing fetched from anywhere but this server. */
"use strict";

(() => {
  // ---- constants ---------------------------------------------------------------------------
  const CONCURRENCY = 3;               // uploads at a time
  const BUSY_RETRIES = 2;              // 503: retry this many times after Retry-After, then give up
  const MAX_RETRY_AFTER_S = 30;
  const DEFAULT_FLOOR = 0.05;          // /v1/detect is asked once with this conf; the slider filters
  const KEY_STORAGE = "weedscan.apiKey";
  const WEED_CLASSES = new Set(["weed"]);          // as serving/result.py WEED_CLASS_NAMES
  // Same colours as serving/annotate.py (there in BGR).
  const CLASS_COLOURS = { crop: "#28c83c", weed: "#e61ec8" };
  const PALETTE = ["#ffa500", "#1e90ff", "#ffd700", "#ff69b4"];
  const SVG_NS = "http://www.w3.org/2000/svg";

  // ---- page elements -----------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  const el = {
    modelInfo: $("model-info"), keyPanel: $("key-panel"), keyForm: $("key-form"),
    keyInput: $("api-key"), keyError: $("key-error"), keyHelp: $("key-help"),
    dropZone: $("drop-zone"), fileInput: $("file-input"),
    conf: $("conf"), confValue: $("conf-value"), legend: $("legend"),
    csv: $("download-csv"), json: $("download-json"), clear: $("clear"),
    progress: $("progress"), status: $("status"),
    summaryHead: $("summary-head"), summaryBody: $("summary-body"), summaryFoot: $("summary-foot"),
    photos: $("photos"), template: $("photo-template"), caption: $("summary-caption"),
  };

  // ---- state -------------------------------------------------------------------------------
  const floor = readFloor();
  const decimals = floor > 0 && floor < 0.01 ? 4 : 2;
  const state = {
    classes: ["crop", "weed"],
    model: null,
    threshold: 0.25,
    sliderTouched: false,
    photos: [],          // in the order they were added
    queue: [],
    active: 0,
    nextId: 1,
  };
  let apiKey = safeSessionGet(KEY_STORAGE) || "";
  let keyWaiter = null;  // {promise, resolve} while uploads wait for an API key

  function readFloor() {
    // ?min_conf=0.01 asks the server for weaker boxes too (for trying out a new model).
    const raw = new URLSearchParams(window.location.search).get("min_conf");
    const value = raw === null ? NaN : Number(raw);
    return Number.isFinite(value) && value >= 0 && value <= 1 ? value : DEFAULT_FLOOR;
  }

  function safeSessionGet(name) {
    try { return window.sessionStorage.getItem(name); } catch { return null; }
  }

  function safeSessionSet(name, value) {
    try { window.sessionStorage.setItem(name, value); } catch { /* private mode: keep in memory */ }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const roundTo = (value, digits) => Math.round(value * 10 ** digits) / 10 ** digits;

  function authHeaders() {
    return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
  }

  function colourFor(name, classId) {
    return CLASS_COLOURS[name] || PALETTE[classId % PALETTE.length];
  }

  function plural(n, one, many) {
    return `${n}\u00a0${n === 1 ? one : many}`;
  }

  function formatCover(fraction) {
    const pct = fraction * 100;
    return `${pct > 0 && pct < 1 ? pct.toFixed(2) : pct.toFixed(1)}\u00a0%`;
  }

  function retryAfterSeconds(response) {
    const header = response.headers.get("Retry-After");
    const seconds = Number(header);
    if (Number.isFinite(seconds) && seconds >= 0) return Math.min(seconds, MAX_RETRY_AFTER_S);
    const date = Date.parse(header || "");
    if (!Number.isNaN(date)) return Math.min(Math.max(0, (date - Date.now()) / 1000), MAX_RETRY_AFTER_S);
    return 1;
  }

  async function readError(response) {
    try {
      const body = await response.json();
      if (body && body.error) return body.error;
    } catch { /* not JSON */ }
    return { code: "", message: response.statusText || "" };
  }

  // ---- API key -----------------------------------------------------------------------------
  function askForKey(serverMessage) {
    if (!keyWaiter) {
      let resolve;
      const promise = new Promise((r) => { resolve = r; });
      keyWaiter = { promise, resolve };
    }
    el.keyPanel.hidden = false;
    // A key kept from earlier in this tab was refused (changed or revoked): say so.
    el.keyError.textContent = apiKey && serverMessage
      ? "The saved key was not accepted. Enter the key again."
      : "";
    el.keyInput.focus();
    setStatusText("Waiting for the API key…");
    return keyWaiter.promise;
  }

  el.keyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = el.keyInput.value.trim();
    if (!key) {
      el.keyError.textContent = "Enter the API key.";
      el.keyInput.focus();
      return;
    }
    apiKey = key;
    el.keyError.textContent = "Checking…";
    let response;
    try {
      response = await fetch("/v1/models", { headers: authHeaders(), cache: "no-store" });
    } catch {
      el.keyError.textContent = "Cannot reach the server. Check the connection and try again.";
      return;
    }
    if (response.status === 401) {
      el.keyError.textContent = "The key was not accepted. Check it and enter it again.";
      el.keyInput.select();
      return;
    }
    safeSessionSet(KEY_STORAGE, key);
    el.keyInput.value = "";
    el.keyError.textContent = "";
    el.keyPanel.hidden = true;
    if (response.ok) applyModel(await response.json());
    el.fileInput.focus();
    if (keyWaiter) {
      keyWaiter.resolve();
      keyWaiter = null;
    }
    updateProgress(true);
  });

  // ---- model card --------------------------------------------------------------------------
  async function loadModel() {
    let failures = 0;
    for (;;) {
      if (keyWaiter) await keyWaiter.promise;
      let response;
      try {
        response = await fetch("/v1/models", { headers: authHeaders(), cache: "no-store" });
      } catch {
        failures += 1;
        el.modelInfo.textContent = "Cannot reach the server. Retrying…";
        if (failures >= 5) {
          el.modelInfo.textContent = "Cannot reach the server. Reload the page when it is back.";
          return;
        }
        await sleep(2000);
        continue;
      }
      if (response.status === 401) {
        el.modelInfo.textContent = "This server needs an API key.";
        await askForKey((await readError(response)).message);
        continue;
      }
      if (response.status === 503) {
        el.modelInfo.textContent = "The model is loading…";
        await sleep(retryAfterSeconds(response) * 1000);
        continue;
      }
      if (!response.ok) {
        el.modelInfo.textContent = `The server answered ${response.status} for its model card.`;
        return;
      }
      applyModel(await response.json());
      return;
    }
  }

  function applyModel(body) {
    const card = body && body.models && body.models[0];
    if (!card) return;
    state.model = card;
    if (Array.isArray(card.classes) && card.classes.length) state.classes = card.classes.slice();
    const parts = [`Model: ${card.name || "unknown"}`];
    if (card.version) parts.push(`version ${card.version}`);
    el.modelInfo.textContent = parts.join(", ");
    buildLegend();
    buildSummaryHead();
    const suggested = card.thresholds && Number(card.thresholds.conf);
    if (!state.sliderTouched && Number.isFinite(suggested)) {
      setSlider(Math.max(floor, Math.min(1, suggested)));
    }
  }

  function buildLegend() {
    el.legend.replaceChildren(...state.classes.map((name, id) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.setAttribute("aria-hidden", "true");
      swatch.style.borderColor = colourFor(name, id);
      item.append(swatch, name);
      return item;
    }));
  }

  function columnLabel(name) {
    const label = { crop: "Crops", weed: "Weeds" }[name] || name;
    return label.charAt(0).toUpperCase() + label.slice(1);
  }

  function buildSummaryHead() {
    const cells = ["Photo", ...state.classes.map(columnLabel), "Weed box cover", "Status"];
    el.summaryHead.replaceChildren(...cells.map((text, i) => {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = text;
      if (i > 0 && i < cells.length - 1) th.className = "num";
      return th;
    }));
    for (const photo of state.photos) {
      buildRowCells(photo);
      if (photo.answer) showCounts(photo);
    }
    updateTotals();
  }

  // ---- slider ------------------------------------------------------------------------------
  function setupSlider() {
    el.conf.min = String(floor);
    el.conf.step = String(10 ** -decimals);
    setSlider(Math.max(floor, state.threshold));
    el.conf.addEventListener("input", () => {
      state.sliderTouched = true;
      readSlider();
      scheduleFilter();
    });
  }

  function setSlider(value) {
    el.conf.value = String(value);
    readSlider();
    scheduleFilter();
  }

  function readSlider() {
    state.threshold = roundTo(Number(el.conf.value), decimals);
    el.confValue.textContent = `≥ ${state.threshold.toFixed(decimals)}`;
    el.caption.textContent = `Summary at minimum confidence ${state.threshold.toFixed(decimals)}`;
  }

  let filterScheduled = false;
  function scheduleFilter() {
    if (filterScheduled) return;
    filterScheduled = true;
    requestAnimationFrame(() => {
      filterScheduled = false;
      for (const photo of state.photos) if (photo.answer) applyThreshold(photo);
      updateTotals();
    });
  }

  // ---- adding photos -----------------------------------------------------------------------
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

  function addFiles(files) {
    const list = Array.from(files || []);
    if (!list.length) return;
    for (const file of list) {
      const photo = {
        id: state.nextId++, file, name: file.name || "photo", status: "queued",
        url: null, answer: null, dets: [], rects: [], visible: -1, counts: {}, cover: 0,
        coverMemo: new Map(), imageReady: false, imageFailed: false, serverCopyTried: false,
        removed: false,
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
    photo.errorText = item.querySelector(".photo-error");
    photo.pngButton = item.querySelector(".photo-png");
    item.querySelector(".photo-name").textContent = photo.name;
    photo.img.alt = `Photo ${photo.name}`;
    photo.pngButton.setAttribute("aria-label", `Download ${photo.name} with boxes as PNG`);
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

  function buildRow(photo) {
    const row = document.createElement("tr");
    row.dataset.file = photo.name;
    photo.row = row;
    buildRowCells(photo);
    el.summaryBody.append(row);
  }

  function buildRowCells(photo) {
    const nameCell = document.createElement("th");
    nameCell.scope = "row";
    const link = document.createElement("a");
    link.href = `#photo-${photo.id}`;
    link.textContent = photo.name;
    nameCell.append(link);
    photo.cells = {};
    const cells = [nameCell];
    for (const name of state.classes) {
      const td = document.createElement("td");
      td.className = "num";
      td.dataset.col = name;
      photo.cells[name] = td;
      cells.push(td);
    }
    photo.cells.cover = document.createElement("td");
    photo.cells.cover.className = "num";
    photo.cells.cover.dataset.col = "weed_cover";
    photo.cells.status = document.createElement("td");
    photo.cells.status.dataset.col = "status";
    cells.push(photo.cells.cover, photo.cells.status);
    photo.row.replaceChildren(...cells);
    if (photo.status === "failed") for (const td of cells.slice(1, -1)) td.textContent = "–";
    setPhotoStatus(photo, photo.status, photo.statusText);
  }

  const STATUS_TEXT = {
    queued: "Waiting", analysing: "Analysing…", busy: "Server busy", done: "Done", failed: "Failed",
  };

  function setPhotoStatus(photo, status, text) {
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

  // ---- uploading ---------------------------------------------------------------------------
  const modelLoaded = loadModel();

  function pump() {
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

  async function analyse(photo) {
    await modelLoaded;
    let busy = 0;
    for (;;) {
      if (keyWaiter) await keyWaiter.promise;
      if (photo.removed) return;
      setPhotoStatus(photo, "analysing");
      updateProgress();
      let response;
      try {
        const form = new FormData();
        form.append("image", photo.file, photo.name);
        response = await fetch(`/v1/detect?conf=${floor}`, {
          method: "POST", body: form, headers: authHeaders(), cache: "no-store",
        });
      } catch {
        fail(photo, "Could not reach the server. Check the connection, then try again.", true,
             "no connection");
        return;
      }
      if (photo.removed) return;
      if (response.ok) {
        succeed(photo, await response.json());
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

  function fail(photo, message, retryable, reason) {
    photo.failedMessage = message;
    photo.failedReason = reason || "";
    setPhotoStatus(photo, "failed");
    photo.errorText.textContent = message;
    photo.card.classList.add("has-error");
    photo.countsText.textContent = "";
    for (const name of state.classes) photo.cells[name].textContent = "–";
    photo.cells.cover.textContent = "–";
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

  function succeed(photo, answer) {
    photo.answer = answer;
    photo.dets = (answer.detections || []).slice().sort((a, b) => b.confidence - a.confidence);
    const { width, height } = answer.image;
    photo.card.querySelector(".figure").style.aspectRatio = `${width} / ${height}`;
    photo.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const fragment = document.createDocumentFragment();
    photo.rects = photo.dets.map((det) => {
      const { x1, y1, x2, y2 } = det.box;
      const rect = document.createElementNS(SVG_NS, "rect");
      rect.setAttribute("x", x1);
      rect.setAttribute("y", y1);
      rect.setAttribute("width", Math.max(0, x2 - x1));
      rect.setAttribute("height", Math.max(0, y2 - y1));
      rect.setAttribute("stroke", colourFor(det.class_name, det.class_id));
      rect.setAttribute("data-class", det.class_name);
      rect.setAttribute("data-confidence", det.confidence);
      fragment.append(rect);
      return rect;
    });
    photo.svg.append(fragment);
    photo.visible = photo.rects.length;
    photo.pngButton.disabled = false;
    photo.img.alt = `Photo ${photo.name} with detected boxes`;
    setPhotoStatus(photo, "done");
    applyThreshold(photo);
    updateTotals();
    updateProgress();
    checkImage(photo);
  }

  // Chromium cannot show TIFF, and a browser may not apply EXIF rotation: then ask this server
  // for a displayable copy (PNG, no boxes: conf=1 keeps none) so the boxes line up.
  async function checkImage(photo) {
    if (!photo.answer || photo.serverCopyTried) return;
    const { width, height } = photo.answer.image;
    const mismatch = photo.imageReady
      && (photo.img.naturalWidth !== width || photo.img.naturalHeight !== height);
    if (!photo.imageFailed && !mismatch) return;
    photo.serverCopyTried = true;
    try {
      const form = new FormData();
      form.append("image", photo.file, photo.name);
      const response = await fetch("/v1/annotate?conf=1&format=png", {
        method: "POST", body: form, headers: authHeaders(), cache: "no-store",
      });
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

  // ---- filtering, counts, weed cover -------------------------------------------------------
  function countAtLeast(dets, threshold) {
    // dets sorted by confidence, highest first: binary search for the first one below.
    let lo = 0;
    let hi = dets.length;
    const limit = threshold - 1e-9;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (dets[mid].confidence >= limit) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  function applyThreshold(photo) {
    const shown = countAtLeast(photo.dets, state.threshold);
    if (shown !== photo.visible) {
      const from = Math.min(shown, photo.visible);
      const to = Math.max(shown, photo.visible);
      for (let i = from; i < to; i += 1) photo.rects[i].toggleAttribute("hidden", i >= shown);
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
    if (!photo.coverMemo.has(shown)) photo.coverMemo.set(shown, weedCover(photo, shown));
    photo.cover = photo.coverMemo.get(shown);
    showCounts(photo);
  }

  function weedCover(photo, shown) {
    const { width, height } = photo.answer.image;
    const boxes = [];
    for (let i = 0; i < shown; i += 1) {
      const det = photo.dets[i];
      if (WEED_CLASSES.has(det.class_name)) boxes.push([det.box.x1, det.box.y1, det.box.x2, det.box.y2]);
    }
    const area = width * height;
    return area ? unionArea(boxes) / area : 0;
  }

  // Exact area of the union of axis-aligned boxes: sweep over x, merge the y-intervals per slab.
  function unionArea(boxes) {
    if (!boxes.length) return 0;
    const xs = Array.from(new Set(boxes.flatMap((b) => [b[0], b[2]]))).sort((a, b) => a - b);
    let area = 0;
    for (let i = 0; i + 1 < xs.length; i += 1) {
      const left = xs[i];
      const right = xs[i + 1];
      const spans = [];
      for (const b of boxes) if (b[0] <= left && b[2] >= right && b[3] > b[1]) spans.push([b[1], b[3]]);
      if (!spans.length) continue;
      spans.sort((a, b) => a[0] - b[0]);
      let covered = 0;
      let [start, end] = spans[0];
      for (let j = 1; j < spans.length; j += 1) {
        const [y1, y2] = spans[j];
        if (y1 > end) {
          covered += end - start;
          start = y1;
          end = y2;
        } else if (y2 > end) {
          end = y2;
        }
      }
      covered += end - start;
      area += covered * (right - left);
    }
    return area;
  }

  function showCounts(photo) {
    photo.countsShownFor = photo.visible;
    const parts = state.classes.map((name) => {
      const n = photo.counts[name] || 0;
      if (name === "crop") return plural(n, "crop", "crops");
      if (name === "weed") return plural(n, "weed", "weeds");
      return `${n}\u00a0${name}`;
    });
    parts.push(`weed\u00a0box\u00a0cover\u00a0${formatCover(photo.cover)}`);
    photo.countsText.textContent = parts.join(" · ");
    for (const name of state.classes) {
      if (photo.cells[name]) photo.cells[name].textContent = String(photo.counts[name] || 0);
    }
    photo.cells.cover.textContent = formatCover(photo.cover);
    photo.card.dataset.visible = String(photo.visible);
  }

  function updateTotals() {
    const done = state.photos.filter((p) => p.answer && !p.removed);
    el.csv.disabled = done.length === 0;
    el.json.disabled = done.length === 0;
    if (!done.length) {
      el.summaryFoot.hidden = true;
      return;
    }
    const cells = [];
    const label = document.createElement("th");
    label.scope = "row";
    label.textContent = `All ${plural(done.length, "photo", "photos")}`;
    cells.push(label);
    for (const name of state.classes) {
      const td = document.createElement("td");
      td.className = "num";
      td.textContent = String(done.reduce((sum, p) => sum + (p.counts[name] || 0), 0));
      cells.push(td);
    }
    const cover = document.createElement("td");
    cover.className = "num";
    cover.textContent = `mean\u00a0${formatCover(done.reduce((sum, p) => sum + p.cover, 0) / done.length)}`;
    cells.push(cover, document.createElement("td"));
    const row = document.createElement("tr");
    row.append(...cells);
    el.summaryFoot.replaceChildren(row);
    el.summaryFoot.hidden = false;
  }

  // ---- progress ----------------------------------------------------------------------------
  let lastStatusAt = 0;
  let statusTimer = null;

  function setStatusText(text) {
    el.status.textContent = text;
  }

  function updateProgress(immediate = false) {
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

  // ---- downloads ---------------------------------------------------------------------------
  function saveBlob(blob, filename) {
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = filename;
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function csvField(value) {
    let text = String(value);
    if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;   // keep spreadsheets from running formulas
    return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  }

  function summaryCsv() {
    const header = ["file", ...state.classes, "weed_box_cover_percent", "min_confidence"];
    const lines = [header.map(csvField).join(",")];
    for (const photo of state.photos) {
      if (!photo.answer || photo.removed) continue;
      lines.push([
        photo.name,
        ...state.classes.map((name) => photo.counts[name] || 0),
        (photo.cover * 100).toFixed(3),
        state.threshold.toFixed(decimals),
      ].map(csvField).join(","));
    }
    return `${lines.join("\r\n")}\r\n`;
  }

  function detectionsJson() {
    const photos = state.photos.filter((p) => !p.removed && (p.answer || p.status === "failed"));
    return {
      model: state.model ? { name: state.model.name, version: state.model.version, sha256: state.model.sha256 } : null,
      min_confidence: state.threshold,
      exported: new Date().toISOString(),
      photos: photos.map((p) => (p.answer ? {
        file: p.name,
        image: p.answer.image,
        counts: p.counts,
        weed_box_cover: roundTo(p.cover, 6),
        detections: p.dets.slice(0, p.visible),
      } : { file: p.name, error: p.failedMessage })),
    };
  }

  function stamp() {
    return new Date().toISOString().slice(0, 16).replace(/[:T]/g, "-");
  }

  el.csv.addEventListener("click", () => {
    saveBlob(new Blob([summaryCsv()], { type: "text/csv" }), `weedscan-summary-${stamp()}.csv`);
  });

  el.json.addEventListener("click", () => {
    const text = JSON.stringify(detectionsJson(), null, 2);
    saveBlob(new Blob([text], { type: "application/json" }), `weedscan-detections-${stamp()}.json`);
  });

  async function downloadPng(photo) {
    if (!photo.answer || !photo.url) return;
    photo.pngButton.disabled = true;
    try {
      const image = new Image();
      image.src = photo.url;
      await image.decode();
      const { width, height } = photo.answer.image;
      const canvas = document.createElement("canvas");
      canvas.width = width;
      canvas.height = height;
      const ctx = canvas.getContext("2d");
      ctx.drawImage(image, 0, 0, width, height);
      drawBoxes(ctx, photo, width, height);
      const blob = await new Promise((resolve, reject) => canvas.toBlob(
        (b) => (b ? resolve(b) : reject(new Error("the browser could not make the PNG"))), "image/png"));
      saveBlob(blob, `${photo.name.replace(/\.[^.]+$/, "")}-weedscan.png`);
    } catch (error) {
      photo.errorText.textContent = `Could not make the PNG: ${error.message || error}`;
    } finally {
      photo.pngButton.disabled = false;
    }
  }

  // Like serving/annotate.py: box outline, then a filled label "name 0.91" above it.
  function drawBoxes(ctx, photo, width, height) {
    const scale = Math.max(width, height) / 1000;
    const thickness = Math.max(1, Math.round(2 * scale));
    const fontSize = Math.max(11, Math.round(16 * scale));
    ctx.lineWidth = thickness;
    ctx.font = `${fontSize}px sans-serif`;
    ctx.textBaseline = "top";
    for (let i = photo.visible - 1; i >= 0; i -= 1) {   // weakest first, strongest on top
      const det = photo.dets[i];
      const colour = colourFor(det.class_name, det.class_id);
      const { x1, y1, x2, y2 } = det.box;
      ctx.strokeStyle = colour;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      const label = `${det.class_name} ${det.confidence.toFixed(2)}`;
      const textWidth = ctx.measureText(label).width;
      const boxHeight = fontSize + 4;
      const top = Math.max(y1 - boxHeight, 0);
      ctx.fillStyle = colour;
      ctx.fillRect(x1, top, textWidth + 6, boxHeight);
      ctx.fillStyle = "#ffffff";
      ctx.fillText(label, x1 + 3, top + 2);
    }
  }

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

  setupSlider();
  buildLegend();
  buildSummaryHead();
  updateProgress(true);
})();
