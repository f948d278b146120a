/* What to look for: the confidence slider and the mode (the model or green-on-brown). */

import { buildLegend } from "./models.js";
import { applyThreshold } from "./results.js";
import { decimals, el, floor, roundTo, state } from "./state.js";
import { coverTitle, updateTotals } from "./table.js";
import { analyseAgain } from "./uploads.js";

export function setupSlider() {
  el.conf.min = String(floor);
  el.conf.step = String(10 ** -decimals);
  setSlider(Math.max(floor, state.threshold));
  el.conf.addEventListener("input", () => {
    state.sliderTouched = true;
    readSlider();
    scheduleFilter();
  });
}

export function setSlider(value) {
  el.conf.value = String(value);
  readSlider();
  scheduleFilter();
}

const HELP = {
  model: {
    conf: "Boxes below this confidence are hidden at once, and the weed cover follows: each photo "
      + "is sent once, and the page measures the rest from the server's answer.",
    cover: "share of the photo covered by weed plants (vegetation pixels inside weed boxes, "
      + "not in crop boxes), measured on the server's plant mask as the server does.",
  },
  green: {
    conf: "Not used in green-on-brown mode: every green plant region is kept.",
    cover: "share of the photo covered by plants (vegetation pixels inside the plant boxes), "
      + "as the server measures it.",
  },
};

export function readSlider() {
  state.threshold = roundTo(Number(el.conf.value), decimals);
  el.confHelp.textContent = HELP[state.mode].conf;
  el.coverHelp.replaceChildren(Object.assign(document.createElement("strong"), { textContent: coverTitle() }),
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

for (const radio of el.modes) {
  radio.addEventListener("change", () => { if (radio.checked) setMode(radio.value); });
}
