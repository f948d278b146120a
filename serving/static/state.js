/* The page's shared state: its elements, the photos and their settings, small helpers. Modules
 * change `state` through their own functions (photos.js adds photos, controls.js the settings). */



export const CONCURRENCY = 3;               // uploads at a time
export const BUSY_RETRIES = 2;              // 503: retry this many times after Retry-After, then give up
const MAX_RETRY_AFTER_S = 30;
const DEFAULT_FLOOR = 0.05;          // /v1/detect is asked once with this conf; the slider filters

export const WEED_CLASSES = new Set(["weed", "plant"]);   // as serving/result.py WEED_CLASS_NAMES

const $ = (id) => document.getElementById(id);
export const el = {
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
  viewerStage: $("viewer-stage"), viewerPrev: $("viewer-prev"), viewerNext: $("viewer-next"),
  viewerPosition: $("viewer-position"), viewerWarning: $("viewer-warning"),
  zoomIn: $("zoom-in"), zoomOut: $("zoom-out"), zoomReset: $("zoom-reset"), geojson: $("download-geojson"),
  sessionsWrap: $("sessions-wrap"), sessionsHead: $("sessions-head"), sessionsBody: $("sessions-body"),
};

// ---- state -------------------------------------------------------------------------------
export const floor = readFloor();
export const decimals = floor > 0 && floor < 0.01 ? 4 : 2;
export const state = {
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
  sessions: [],        // one per pick or drop of photos: {id, started}
  active: 0,
  nextId: 1,
  modelLoaded: null,   // GET /v1/models at start: uploads wait for it
};

function readFloor() {
  // ?min_conf=0.01 asks the server for weaker boxes too (for trying out a new model).
  const raw = new URLSearchParams(window.location.search).get("min_conf");
  const value = raw === null ? NaN : Number(raw);
  return Number.isFinite(value) && value >= 0 && value <= 1 ? value : DEFAULT_FLOOR;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export const roundTo = (value, digits) => Math.round(value * 10 ** digits) / 10 ** digits;

export function formatCover(fraction) {
  if (fraction === undefined) return "…";
  if (fraction === null || !Number.isFinite(fraction)) return "–";
  const pct = fraction * 100;
  return `${pct > 0 && pct < 1 ? pct.toFixed(2) : pct.toFixed(1)}\u00a0%`;
}

export function retryAfterSeconds(response) {
  const header = response.headers.get("Retry-After");
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.min(seconds, MAX_RETRY_AFTER_S);
  const date = Date.parse(header || "");
  if (!Number.isNaN(date)) return Math.min(Math.max(0, (date - Date.now()) / 1000), MAX_RETRY_AFTER_S);
  return 1;
}

// The threshold the boxes are filtered at: green-on-brown answers are not filtered by
// confidence on the server (every plant region is a target), so not here either.
export function threshold() {
  return state.mode === "green" ? 0 : state.threshold;
}
