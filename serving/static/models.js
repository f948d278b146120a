/* The server's models: the card of the one that answers, the model choice and the legend. */

import { readError } from "./api.js";
import { askForKey, authHeaders, keyWaiter } from "./auth.js";
import { colourFor } from "./boxes.js";
import { setSlider } from "./controls.js";
import { el, floor, retryAfterSeconds, sleep, state } from "./state.js";
import { buildSummaryHead } from "./table.js";
import { analyseAgain } from "./uploads.js";

export async function loadModel() {
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

export function applyModel(body) {
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

export function buildLegend() {
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

el.modelSelect.addEventListener("change", () => chooseModel(el.modelSelect.value));
