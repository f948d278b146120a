/* weedscan web page: upload photos to this server's /v1/detect (model or green-on-brown mode),
 * draw the boxes, filter them client-side with a confidence slider, show a photo large with its
 * labelled boxes, its vegetation mask and its EXIF GPS position, and export the results.
 * Plain JS, no dependencies, nothing fetched from anywhere but this server. */
"use strict";

(() => {
  // ---- constants ---------------------------------------------------------------------------
  const CONCURRENCY = 3;               // uploads at a time
  const BUSY_RETRIES = 2;              // 503: retry this many times after Retry-After, then give up
  const MAX_RETRY_AFTER_S = 30;
  const DEFAULT_FLOOR = 0.05;          // /v1/detect is asked once with this conf; the slider filters
  const KEY_STORAGE = "weedscan.apiKey";
  const WEED_CLASSES = new Set(["weed", "plant"]);   // as serving/result.py WEED_CLASS_NAMES
  // Every box is a coloured line on a dark halo, so it reads on green plants and on pale soil
  // alike: crop white (green vanished on the crop's own leaves), weed magenta, `plant`
  // (green-on-brown) orange; serving/annotate.py draws the same for /v1/annotate.
  const CLASS_COLOURS = { crop: "#ffffff", weed: "#e61ec8", plant: "#ffa500" };
  const HALO = "#0d1a0d";
  const PALETTE = ["#ffa500", "#1e90ff", "#ffd700", "#ff69b4"];
  const MASK_RGBA = [0, 229, 255, 150];             // plant pixels of the vegetation overlay
  const SVG_NS = "http://www.w3.org/2000/svg";

  // ---- page elements -----------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  const el = {
    modelInfo: $("model-info"), keyPanel: $("key-panel"), keyForm: $("key-form"),
    modelSelect: $("model-select"), modelList: $("model-list"),
    keyInput: $("api-key"), keyError: $("key-error"), keyHelp: $("key-help"),
    dropZone: $("drop-zone"), fileInput: $("file-input"),
    conf: $("conf"), confValue: $("conf-value"), legend: $("legend"),
    csv: $("download-csv"), json: $("download-json"), clear: $("clear"),
    progress: $("progress"), status: $("status"),
    summaryHead: $("summary-head"), summaryBody: $("summary-body"), summaryFoot: $("summary-foot"),
    photos: $("photos"), template: $("photo-template"), caption: $("summary-caption"),
    modes: Array.from(document.querySelectorAll('input[name="mode"]')),
    showMask: $("show-mask"), maskToggles: Array.from(document.querySelectorAll(".mask-toggle")),
    viewer: $("viewer"), viewerTitle: $("viewer-title"), viewerClose: $("viewer-close"),
    viewerFigure: $("viewer-figure"), viewerImg: $("viewer-img"), viewerSvg: $("viewer-svg"),
    viewerMask: $("viewer-mask"), viewerLabel: $("viewer-label"), viewerCounts: $("viewer-counts"),
    viewerGps: $("viewer-gps"), confHelp: $("conf-help"), coverHelp: $("cover-help"),
  };

  // ---- state -------------------------------------------------------------------------------
  const floor = readFloor();
  const decimals = floor > 0 && floor < 0.01 ? 4 : 2;
  const state = {
    classes: ["crop", "weed"],
    modelClasses: ["crop", "weed"],
    mode: "model",       // or "green": /v1/detect?mode=green, no model, every plant is a target
    showMask: false,
    model: null,         // the card of the model that analyses the photos
    models: [],          // GET /v1/models: every model of the server, with its state
    activeModel: null,   // the server's default
    chosenModel: "",     // "": the server's active model; else ?model=NAME
    threshold: 0.25,
    sliderTouched: false,
    photos: [],          // in the order they were added
    queue: [],
    coverQueue: [],      // asking the server for the weed cover at the slider's threshold
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

  // Dark text on light label chips (crop white, plant orange), white text on the others.
  function labelTextColour(hex) {
    const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255)
      .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
    return 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.3 ? "#111111" : "#ffffff";
  }

  function boxLabel(det) {
    return `${det.class_name} ${det.confidence.toFixed(2)}`;
  }

  function plural(n, one, many) {
    return `${n}\u00a0${n === 1 ? one : many}`;
  }

  function formatCover(fraction) {
    if (fraction === undefined) return "…";
    if (fraction === null || !Number.isFinite(fraction)) return "–";
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
    state.models = (body && Array.isArray(body.models)) ? body.models : [];
    state.activeModel = body && body.active;
    buildModelChoice();
    useCard(chosenCard());
  }

  function chosenCard() {
    const name = state.chosenModel || state.activeModel;
    return state.models.find((m) => m.name === name && m.state !== "broken") ||
      state.models.find((m) => m.state !== "broken");
  }

  function useCard(card) {
    if (!card) return;
    state.model = card;
    if (Array.isArray(card.classes) && card.classes.length) state.modelClasses = card.classes.slice();
    state.classes = state.mode === "green" ? ["plant"] : state.modelClasses.slice();
    const parts = [`Model: ${card.name || "unknown"}`];
    if (card.version) parts.push(`version ${card.version}`);
    if (card.name === state.activeModel) parts.push("the server's active model");
    el.modelInfo.textContent = parts.join(", ");
    buildLegend();
    buildSummaryHead();
    const suggested = card.thresholds && Number(card.thresholds.conf);
    if (!state.sliderTouched && Number.isFinite(suggested)) {
      setSlider(Math.max(floor, Math.min(1, suggested)));
    }
  }

  function modelLabel(m) {
    const flags = [m.state === "broken" ? "broken" : m.state];
    if (m.name === state.activeModel) flags.unshift("active");
    return `${m.name}${m.version ? ` ${m.version}` : ""} (${flags.join(", ")})`;
  }

  function lineageText(m) {
    const chain = Array.isArray(m.lineage) ? m.lineage : [];
    if (!chain.length) return "Lineage: not recorded.";
    // each ancestor's file and sha256; the licence of the first weights (the others' are in the card)
    return "Lineage: " + chain.map((e) => `${e.relation} ${e.file} (${String(e.sha256).slice(0, 12)}…` +
      `${e.relation === "pretrained start" ? `, ${e.licence}` : ""})`).join(" ← ");
  }

  // The select (one option per model; broken ones shown, not choosable) and the list of the
  // models with their state, which one is active and each one's lineage.
  function buildModelChoice() {
    const options = [];
    const active = state.models.find((m) => m.name === state.activeModel);
    const first = document.createElement("option");
    first.value = "";
    first.textContent = active ? `Server default: ${modelLabel(active)}` : "Server default";
    options.push(first);
    for (const m of state.models) {
      const option = document.createElement("option");
      option.value = m.name;
      option.textContent = modelLabel(m);
      option.disabled = m.state === "broken";
      if (m.reason) option.title = m.reason;
      options.push(option);
    }
    el.modelSelect.replaceChildren(...options);
    if (!state.models.some((m) => m.name === state.chosenModel && m.state !== "broken")) state.chosenModel = "";
    el.modelSelect.value = state.chosenModel;
    el.modelSelect.disabled = state.mode === "green" || state.models.length < 1;
    el.modelList.replaceChildren(...state.models.map((m) => {
      const li = document.createElement("li");
      li.dataset.model = m.name;
      li.dataset.state = m.state;
      const name = document.createElement("strong");
      name.textContent = m.name;
      const what = document.createElement("span");
      what.className = "model-state";
      what.textContent = ` ${m.version || ""} — ${m.name === state.activeModel ? "active, " : ""}${m.state}`;
      const more = document.createElement("span");
      more.className = m.state === "broken" ? "model-reason" : "model-lineage";
      more.textContent = m.state === "broken" ? `Why: ${m.reason}` : lineageText(m);
      li.append(name, what, more);
      return li;
    }));
  }

  function chooseModel(name) {
    if (name === state.chosenModel) return;
    state.chosenModel = name;
    useCard(chosenCard());
    analyseAgain();
  }

  function buildLegend() {
    el.legend.replaceChildren(...state.classes.map((name, id) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.setAttribute("aria-hidden", "true");
      swatch.style.borderColor = colourFor(name, id);
      swatch.dataset.class = name;
      item.append(swatch, name);
      return item;
    }));
  }

  function columnLabel(name) {
    const label = { crop: "Crops", weed: "Weeds", plant: "Plants" }[name] || name;
    return label.charAt(0).toUpperCase() + label.slice(1);
  }

  function buildSummaryHead() {
    const cells = ["Photo", ...state.classes.map(columnLabel), "Weed cover", "Status"];
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

  const HELP = {
    model: {
      conf: "Boxes below this confidence are hidden at once. When the slider rests, the server "
        + "measures the weed cover of the boxes left (each photo is sent once more per setting).",
      cover: "share of the photo covered by weed plants (vegetation pixels inside weed boxes, "
        + "not in crop boxes), as the server measures it.",
    },
    green: {
      conf: "Not used in green-on-brown mode: every green plant region is kept.",
      cover: "share of the photo covered by plants (vegetation pixels inside the plant boxes), "
        + "as the server measures it.",
    },
  };

  function readSlider() {
    state.threshold = roundTo(Number(el.conf.value), decimals);
    el.confHelp.textContent = HELP[state.mode].conf;
    el.coverHelp.replaceChildren(Object.assign(document.createElement("strong"), { textContent: "Weed cover" }),
                                 `: ${HELP[state.mode].cover}`);
    if (state.mode === "green") {
      el.confValue.textContent = "not used";
      el.caption.textContent = "Summary: every green plant (green-on-brown)";
      return;
    }
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
      el.photos.dataset.threshold = state.threshold.toFixed(decimals);   // applied (for tests)
    });
  }

  // The threshold the boxes are filtered at: green-on-brown answers are not filtered by
  // confidence on the server (every plant region is a target), so not here either.
  function threshold() {
    return state.mode === "green" ? 0 : state.threshold;
  }

  // ---- mode: the model, or green-on-brown --------------------------------------------------
  function setMode(mode) {
    if (mode === state.mode) return;
    state.mode = mode;
    state.classes = mode === "green" ? ["plant"] : state.modelClasses.slice();
    el.conf.disabled = mode === "green";
    el.modelSelect.disabled = mode === "green" || state.models.length < 1;
    document.body.dataset.mode = mode;
    buildLegend();
    analyseAgain();
  }

  // Every photo already added is analysed again (another mode or model).
  function analyseAgain() {
    for (const photo of state.photos) {
      if (photo.removed || !photo.url) continue;
      resetPhoto(photo);
      if (!state.queue.includes(photo)) state.queue.push(photo);
    }
    state.coverQueue = [];
    buildSummaryHead();
    readSlider();
    updateProgress(true);
    pump();
  }

  function resetPhoto(photo) {
    photo.generation += 1;
    photo.answer = null;
    photo.dets = [];
    photo.boxes = [];
    photo.visible = -1;
    photo.counts = {};
    photo.cover = undefined;
    photo.boxCover = undefined;
    photo.coverMemo = new Map();
    photo.coverQueued = new Set();
    photo.countsShownFor = undefined;
    photo.svg.replaceChildren();
    photo.countsText.textContent = "";
    photo.modelText.hidden = true;
    photo.errorText.textContent = "";
    photo.card.classList.remove("has-error");
    photo.openButton.disabled = true;
    photo.pngButton.disabled = true;
    setPhotoStatus(photo, "queued");
  }

  for (const radio of el.modes) {
    radio.addEventListener("change", () => { if (radio.checked) setMode(radio.value); });
  }
  el.modelSelect.addEventListener("change", () => chooseModel(el.modelSelect.value));

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
        url: null, answer: null, dets: [], boxes: [], visible: -1, counts: {}, cover: undefined,
        boxCover: undefined, coverMemo: new Map(), coverQueued: new Set(), imageReady: false, imageFailed: false,
        serverCopyTried: false, removed: false, generation: 0, gps: null, mask: null,
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
      readGps(file).then((fix) => showGps(photo, fix));
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
    photo.modelText = item.querySelector(".photo-model");
    photo.errorText = item.querySelector(".photo-error");
    photo.pngButton = item.querySelector(".photo-png");
    photo.openButton = item.querySelector(".photo-open");
    photo.gpsText = item.querySelector(".photo-gps");
    photo.maskCanvas = item.querySelector("canvas.mask");
    photo.label = item.querySelector(".box-label");
    photo.figure = item.querySelector(".figure");
    item.querySelector(".photo-name").textContent = photo.name;
    photo.img.alt = `Photo ${photo.name}`;
    photo.pngButton.setAttribute("aria-label", `Download ${photo.name} with boxes as PNG`);
    photo.openButton.setAttribute("aria-label", `View ${photo.name} large`);
    photo.openButton.addEventListener("click", () => openViewer(photo, photo.openButton));
    photo.figure.addEventListener("click", () => {
      if (photo.answer) openViewer(photo, photo.openButton);
    });
    hoverLabels(photo.svg, photo.label, () => photo);
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
    while (state.active < CONCURRENCY && (state.queue.length || state.coverQueue.length)) {
      if (!state.queue.length) {          // photos first, then the weed covers they need
        const job = state.coverQueue.shift();
        state.active += 1;
        fetchCover(job)
          .catch(() => { job.photo.coverQueued.delete(job.shown); })
          .finally(() => {
            state.active -= 1;
            pump();
          });
        continue;
      }
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
  function postPhoto(photo, url) {
    const form = new FormData();
    form.append("image", photo.file, photo.name);
    return fetch(url, { method: "POST", body: form, headers: authHeaders(), cache: "no-store" });
  }

  function detectUrl(conf) {
    const params = new URLSearchParams({ conf: String(conf) });
    if (state.mode === "green") params.set("mode", "green");
    else if (state.chosenModel) params.set("model", state.chosenModel);
    return `/v1/detect?${params}`;
  }

  async function analyse(photo) {
    await modelLoaded;
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

  function fail(photo, message, retryable, reason) {
    photo.failedMessage = message;
    photo.failedReason = reason || "";
    setPhotoStatus(photo, "failed");
    photo.errorText.textContent = message;
    photo.card.classList.add("has-error");
    photo.countsText.textContent = "";
    for (const name of state.classes) photo.cells[name].textContent = "–";
    photo.cells.cover.textContent = "–";
    photo.cells.cover.dataset.state = "";
    photo.openButton.disabled = true;
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
    photo.mode = state.mode;
    photo.dets = (answer.detections || []).slice().sort((a, b) => b.confidence - a.confidence);
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
    setPhotoStatus(photo, "done");
    applyThreshold(photo);
    updateTotals();
    updateProgress();
    checkImage(photo);
    if (state.showMask) showMaskOn(photo);
  }

  // One <g class="box"> per detection: a dark halo under a coloured line. The returned array is
  // in the order of photo.dets (strongest first); in the SVG the biggest boxes come first, so
  // that a small box inside a big one stays on top, where the pointer reaches it.
  function drawSvgBoxes(svg, photo, focusable) {
    const { width, height } = photo.answer.image;
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const groups = photo.dets.map((det) => {
      const { x1, y1, x2, y2 } = det.box;
      const g = document.createElementNS(SVG_NS, "g");
      g.setAttribute("class", "box");
      g.dataset.class = det.class_name;
      g.dataset.confidence = String(det.confidence);
      for (const part of ["halo", "line"]) {
        const rect = document.createElementNS(SVG_NS, "rect");
        rect.setAttribute("class", part);
        rect.setAttribute("x", x1);
        rect.setAttribute("y", y1);
        rect.setAttribute("width", Math.max(0, x2 - x1));
        rect.setAttribute("height", Math.max(0, y2 - y1));
        rect.setAttribute("stroke", part === "halo" ? HALO : colourFor(det.class_name, det.class_id));
        g.append(rect);
      }
      if (focusable) {
        g.setAttribute("tabindex", "0");
        g.setAttribute("role", "img");
        g.setAttribute("aria-label", `${det.class_name}, confidence ${det.confidence.toFixed(2)}`);
      }
      g.weedscanDet = det;
      return g;
    });
    const byArea = groups.map((g, i) => [g, boxArea(photo.dets[i].box)]).sort((a, b) => b[1] - a[1]);
    svg.replaceChildren(...byArea.map(([g]) => g));
    return groups;
  }

  function boxArea(box) {
    return Math.max(0, box.x2 - box.x1) * Math.max(0, box.y2 - box.y1);
  }

  // ---- box labels: class and confidence on hover, tap and keyboard focus --------------------
  // Where the pointer last was, page-wide. The browser replays pointerover when the layout moves
  // under a resting pointer (a dialog opens); such a replay must not take the label from the box
  // the keyboard focused.
  let lastPointer = null;
  document.addEventListener("pointermove", (event) => { lastPointer = [event.clientX, event.clientY]; },
                            { capture: true, passive: true });

  function hoverLabels(svg, label, currentPhoto) {
    let pinned = null;
    const boxOf = (target) => (target && target.closest ? target.closest(".box") : null);
    const show = (g) => {
      const photo = currentPhoto();
      if (!g || !photo || !photo.answer) return;
      placeLabel(label, g.weedscanDet, photo.answer.image);
    };
    svg.addEventListener("pointerover", (event) => {
      const still = lastPointer && lastPointer[0] === event.clientX && lastPointer[1] === event.clientY;
      lastPointer = [event.clientX, event.clientY];
      if (pinned && still) return;              // a replay under a resting pointer: focus keeps it
      show(boxOf(event.target));
    });
    svg.addEventListener("pointerout", (event) => {
      if (boxOf(event.relatedTarget)) return;          // moving onto another box
      if (pinned) show(pinned); else label.hidden = true;
    });
    svg.addEventListener("focusin", (event) => { pinned = boxOf(event.target); show(pinned); });
    svg.addEventListener("focusout", () => { pinned = null; label.hidden = true; });
    svg.addEventListener("click", (event) => {
      const g = boxOf(event.target);
      if (!g || !g.hasAttribute("tabindex")) return;   // in the cards a click opens the photo
      g.focus({ preventScroll: true });                 // a tap pins the label as focus does
      pinned = g;
      show(g);
    });
  }

  function placeLabel(label, det, image) {
    const { x1, y1, x2 } = det.box;
    label.textContent = boxLabel(det);
    label.dataset.class = det.class_name;
    const colour = colourFor(det.class_name, det.class_id);
    label.style.backgroundColor = colour;
    label.style.color = labelTextColour(colour);
    const left = (100 * x1) / image.width;
    const right = (100 * (image.width - x2)) / image.width;
    label.style.left = left > 70 ? "auto" : `${left}%`;
    label.style.right = left > 70 ? `${Math.max(0, right)}%` : "auto";
    label.style.top = `${(100 * y1) / image.height}%`;
    label.classList.toggle("inside", y1 / image.height < 0.08);   // no room above: inside the box
    label.hidden = false;
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
      const response = await postPhoto(photo, "/v1/annotate?conf=1&format=png");
      if (!response.ok || photo.removed) throw new Error(String(response.status));
      const copy = URL.createObjectURL(await response.blob());
      if (photo.url) URL.revokeObjectURL(photo.url);
      photo.url = copy;
      photo.img.src = copy;
      photo.maskPromise = null;              // the mask is computed from what is shown
      if (state.showMask) showMaskOn(photo);
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
    setCovers(photo, coversFor(photo, shown));
    if (photo.cover === undefined) scheduleCovers();
    showCounts(photo);
  }

  // The weed cover is the server's figure (plant area: vegetation pixels inside weed boxes and
  // in no crop box, serving/result.py), never one of the page's own. The server measures it for
  // the boxes above the confidence it was asked for: the first answer (at the slider's floor)
  // gives it for all the boxes; for fewer boxes the page asks again once the slider rests
  // (sending the photo again: the API does not return the vegetation mask it would need) and
  // keeps each answer for that set of boxes.
  // Both of the answer's cover figures travel together: plant area (weed_cover) and box area.
  function coversFor(photo, shown) {
    if (photo.mode === "green" || shown === photo.dets.length) return answerCovers(photo.answer);
    let weeds = 0;
    for (let i = 0; i < shown; i += 1) if (WEED_CLASSES.has(photo.dets[i].class_name)) weeds += 1;
    if (!weeds) return { plant: 0, box: 0 };
    return photo.coverMemo.get(shown);   // undefined: not known yet; null: the server failed
  }

  function answerCovers(answer) {
    return { plant: answer.weed_cover, box: answer.weed_box_cover };
  }

  function setCovers(photo, covers) {   // undefined and null (not known, failed) pass through
    photo.cover = covers ? covers.plant : covers;
    photo.boxCover = covers ? covers.box : covers;
  }

  let coverTimer = null;
  function scheduleCovers() {
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

  async function fetchCover(job) {
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

  function showCounts(photo) {
    photo.countsShownFor = photo.visible;
    const parts = state.classes.map((name) => {
      const n = photo.counts[name] || 0;
      if (name === "crop") return plural(n, "crop", "crops");
      if (name === "weed") return plural(n, "weed", "weeds");
      if (name === "plant") return plural(n, "plant", "plants");
      return `${n}\u00a0${name}`;
    });
    parts.push(`weed\u00a0cover\u00a0${formatCover(photo.cover)}`);
    photo.countsText.textContent = parts.join(" · ");
    for (const name of state.classes) {
      if (photo.cells[name]) photo.cells[name].textContent = String(photo.counts[name] || 0);
    }
    photo.cells.cover.textContent = formatCover(photo.cover);
    photo.cells.cover.dataset.state = photo.cover === undefined ? "pending" : "known";
    photo.cells.cover.title = photo.cover === null ? "The server could not measure it" : "";
    if (viewing === photo) fillViewerInfo(photo);
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
    const known = done.filter((p) => Number.isFinite(p.cover));
    cover.textContent = known.length < done.length ? "…"
      : `mean\u00a0${formatCover(known.reduce((sum, p) => sum + p.cover, 0) / known.length)}`;
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
    // keep spreadsheets from running formulas (a number, such as a negative latitude, is no formula)
    if (typeof value !== "number" && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
    return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  }

  // The summary table's one schema, as serving/answer.py summary_header (batch's summary.csv):
  // a count per class, both covers as fractions, the confidence floor, the mode, GPS, the error.
  function summaryCsv() {
    const header = ["file", ...state.classes, "weed_cover", "weed_box_cover", "conf", "mode",
                    "latitude", "longitude", "error"];
    const fraction = (value) => (Number.isFinite(value) ? roundTo(value, 6) : "");
    const lines = [header.map(csvField).join(",")];
    for (const photo of state.photos) {
      if (photo.removed || (!photo.answer && photo.status !== "failed")) continue;
      const place = photo.gps ? [roundTo(photo.gps.lat, 7), roundTo(photo.gps.lon, 7)] : ["", ""];
      if (!photo.answer) {
        lines.push([photo.name, ...state.classes.map(() => ""), "", "", "", state.mode, ...place,
                    photo.failedMessage || "failed"].map(csvField).join(","));
        continue;
      }
      lines.push([
        photo.name,
        ...state.classes.map((name) => photo.counts[name] || 0),
        fraction(photo.cover),
        fraction(photo.boxCover),
        state.mode === "green" ? "" : Number(state.threshold.toFixed(decimals)),
        state.mode,
        ...place,
        "",
      ].map(csvField).join(","));
    }
    return `${lines.join("\r\n")}\r\n`;
  }

  function detectionsJson() {
    const photos = state.photos.filter((p) => !p.removed && (p.answer || p.status === "failed"));
    return {
      model: state.model ? { name: state.model.name, version: state.model.version, sha256: state.model.sha256 } : null,
      mode: state.mode,
      min_confidence: state.mode === "green" ? null : state.threshold,
      exported: new Date().toISOString(),
      photos: photos.map((p) => (p.answer ? {
        file: p.name,
        image: p.answer.image,
        counts: p.counts,
        weed_cover: Number.isFinite(p.cover) ? roundTo(p.cover, 6) : null,
        weed_box_cover: Number.isFinite(p.boxCover) ? roundTo(p.boxCover, 6) : null,
        gps: p.gps,
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

  // Like serving/annotate.py: box outline, then a filled label "name 0.91" above it; the outline
  // on a dark halo and in the page's colours.
  function drawBoxes(ctx, photo, width, height) {
    const scale = Math.max(width, height) / 1000;
    const thickness = Math.max(1, Math.round(2 * scale));
    const halo = thickness + 2 * Math.max(1, Math.round(1.5 * scale));
    const fontSize = Math.max(11, Math.round(16 * scale));
    ctx.font = `${fontSize}px sans-serif`;
    ctx.textBaseline = "top";
    for (let i = photo.visible - 1; i >= 0; i -= 1) {   // weakest first, strongest on top
      const det = photo.dets[i];
      const colour = colourFor(det.class_name, det.class_id);
      const { x1, y1, x2, y2 } = det.box;
      ctx.strokeStyle = HALO;
      ctx.lineWidth = halo;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      ctx.strokeStyle = colour;
      ctx.lineWidth = thickness;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      const label = boxLabel(det);
      const textWidth = ctx.measureText(label).width;
      const boxHeight = fontSize + 4;
      const top = Math.max(y1 - boxHeight, 0);
      ctx.fillStyle = colour;
      ctx.fillRect(x1, top, textWidth + 6, boxHeight);
      ctx.fillStyle = labelTextColour(colour);
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

  // ---- EXIF GPS ----------------------------------------------------------------------------
  // /v1/detect does not answer the position (only `weedscan batch` does, serving/exif_gps.py),
  // so the page reads it from the file with the same rules: latitude and longitude from the
  // GPS IFD (degrees, minutes, seconds and N/S, E/W), none when out of range or 0, 0 (what many
  // cameras write without a fix). JPEG (APP1), TIFF, PNG (eXIf) and WebP (EXIF chunk).
  async function readGps(file) {
    try {
      const view = new DataView(await file.arrayBuffer());
      const tiff = exifStart(view);
      return tiff === null ? null : gpsFromTiff(view, tiff);
    } catch {
      return null;   // a short or odd header simply has no position
    }
  }

  function exifStart(v) {
    if (v.byteLength < 16) return null;
    if (v.getUint16(0) === 0xffd8) {                              // JPEG: the APP1 "Exif\0\0"
      let p = 2;
      while (p + 4 <= v.byteLength && v.getUint8(p) === 0xff) {
        const marker = v.getUint8(p + 1);
        if (marker === 0xda || marker === 0xd9) return null;      // image data: no EXIF before it
        const length = v.getUint16(p + 2);
        if (marker === 0xe1 && v.getUint32(p + 4) === 0x45786966 && v.getUint16(p + 8) === 0) return p + 10;
        p += 2 + length;
      }
      return null;
    }
    const order = v.getUint16(0);
    if (order === 0x4949 || order === 0x4d4d) return 0;            // TIFF
    if (v.getUint32(0) === 0x89504e47) {                            // PNG: the eXIf chunk
      for (let p = 8; p + 8 <= v.byteLength; p += 12 + v.getUint32(p)) {
        if (v.getUint32(p + 4) === 0x65584966) return p + 8;
      }
      return null;
    }
    if (v.getUint32(0) === 0x52494646 && v.getUint32(8) === 0x57454250) {   // WebP: "EXIF"
      for (let p = 12; p + 8 <= v.byteLength;) {
        const size = v.getUint32(p + 4, true);
        if (v.getUint32(p) === 0x45584946) {
          const start = p + 8;
          return v.getUint32(start) === 0x45786966 ? start + 6 : start;
        }
        p += 8 + size + (size & 1);
      }
    }
    return null;
  }

  function gpsFromTiff(v, base) {
    const little = v.getUint16(base) === 0x4949;
    const u16 = (at) => v.getUint16(base + at, little);
    const u32 = (at) => v.getUint32(base + at, little);
    if (u16(2) !== 42) return null;
    const entries = (ifd) => {
      const tags = new Map();
      const n = u16(ifd);
      for (let i = 0; i < n; i += 1) {
        const at = ifd + 2 + 12 * i;
        tags.set(u16(at), { type: u16(at + 2), count: u32(at + 4), at: at + 8 });
      }
      return tags;
    };
    const pointer = entries(u32(4)).get(0x8825);
    if (!pointer) return null;
    const gps = entries(u32(pointer.at));
    const ref = (tag) => {
      const entry = gps.get(tag);
      return entry && entry.type === 2 ? String.fromCharCode(v.getUint8(base + entry.at)).toUpperCase() : "";
    };
    const degrees = (tag, hemispheres, refTag) => {
      const entry = gps.get(tag);
      const hemisphere = ref(refTag);
      if (!entry || !hemisphere || !hemispheres.includes(hemisphere)) return null;
      if ((entry.type !== 5 && entry.type !== 10) || entry.count < 1 || entry.count > 3) return null;
      const data = u32(entry.at);
      let total = 0;
      for (let i = 0; i < entry.count; i += 1) {
        const num = entry.type === 5 ? u32(data + 8 * i) : v.getInt32(base + data + 8 * i, little);
        const den = entry.type === 5 ? u32(data + 8 * i + 4) : v.getInt32(base + data + 8 * i + 4, little);
        const value = num / den;
        if (!Number.isFinite(value) || value < 0) return null;
        total += value / 60 ** i;
      }
      return hemisphere === hemispheres[1] ? -total : total;
    };
    const lat = degrees(2, "NS", 1);
    const lon = degrees(4, "EW", 3);
    if (lat === null || lon === null || Math.abs(lat) > 90 || Math.abs(lon) > 180) return null;
    if (lat === 0 && lon === 0) return null;
    return { lat, lon };
  }

  function gpsText(fix) {
    const part = (value, plus, minus) => `${Math.abs(value).toFixed(6)}°\u00a0${value < 0 ? minus : plus}`;
    return `Taken at ${part(fix.lat, "N", "S")}, ${part(fix.lon, "E", "W")} (GPS in the photo)`;
  }

  function showGps(photo, fix) {
    if (!fix || photo.removed) return;
    photo.gps = fix;
    photo.gpsText.textContent = gpsText(fix);
    photo.gpsText.hidden = false;
    photo.card.dataset.lat = String(fix.lat);
    photo.card.dataset.lon = String(fix.lon);
    if (viewing === photo) fillViewerInfo(photo);
  }

  // ---- vegetation mask ---------------------------------------------------------------------
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

  async function showMaskOn(photo) {
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

  // ---- the photo large, in a dialog --------------------------------------------------------
  let viewing = null;
  let viewerOpener = null;

  function openViewer(photo, opener) {
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

  function fillViewerInfo(photo) {
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

  // The page's modules (review.js, fields.js, jobs.js) use these; nothing else is shared.
  window.weedscan = Object.freeze({
    authHeaders,
    askForKey,                      // a 401: wait until the user gives a key, then retry
    viewing: () => viewing,         // the photo in the large view (its file, answer, boxes shown)
    shownBoxes: (photo) => photo.dets.slice(0, Math.max(0, photo.visible)),
    reloadModels: loadModel,        // after a promotion: the selector shows the new active model
  });

  setupSlider();
  buildLegend();
  buildSummaryHead();
  updateProgress(true);
})();
