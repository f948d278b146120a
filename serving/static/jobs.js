/* Teach weedscan a field: start a fine-tuning job on a field dataset (POST /v1/jobs), follow it
 * (a bar with the epoch and the time left, Cancel), then show base and candidate side by side on
 * the gate's photos and let the user promote the candidate (the registry's activation), or show
 * why the job stopped and rerun it. */

import { announce, call, failure, json, make, sendJson, slug } from "./api.js";
import { loadModel } from "./models.js";

const POLL_MS = 1500;
const MIN_TRAIN = 4;   // as serving/api/routes/jobs.py: 2 photos are kept out to score the result
const $ = (id) => document.getElementById(id);
const el = {
  teach: $("teach"), form: $("teach-form"), name: $("teach-name"), minutes: $("teach-minutes"),
  start: $("teach-start"), hint: $("teach-hint"), job: $("job"), title: $("job-title"),
  bar: $("job-progress"), status: $("job-status"), cancel: $("job-cancel"), rerun: $("job-rerun"),
  compare: $("job-compare"), table: $("job-gate"), verdict: $("job-verdict"), promote: $("job-promote"),
  promoted: $("job-promoted"), pairs: $("job-photos"),
};
const SVG_NS = "http://www.w3.org/2000/svg";
const COLOURS = { crop: "#ffffff", weed: "#e61ec8" };
let pairsShown = "";    // the job whose photos are shown (they are analysed once)
let dataset = null;     // the dataset's info (GET /v1/datasets/NAME)
let current = null;     // the job shown
let following = 0;      // a newer follow() stops the older ones

function stamp() {
  const d = new Date();
  const two = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}${two(d.getMonth() + 1)}${two(d.getDate())}-${two(d.getHours())}${two(d.getMinutes())}`;
}

function duration(seconds) {
  if (!Number.isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${String(s % 60).padStart(2, "0")} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

const score = (v) => (Number.isFinite(v) ? v.toFixed(2) : "–");

export async function showTeach(info) {
  const changed = !dataset || dataset.name !== info.name;
  dataset = info;
  const train = info.splits?.train || 0;
  const enough = train >= MIN_TRAIN || (train >= 2 && (info.splits?.val || 0) >= 1);
  el.start.disabled = !enough;
  el.hint.textContent = enough ? ""
    : `Save at least ${MIN_TRAIN} photos to this dataset first (it has ${train}): 2 are kept out to score the result.`;
  if (!changed) return;
  el.name.value = `${slug(info.name).slice(0, 48)}-${stamp()}`;
  following += 1;
  current = null;
  el.job.hidden = true;
  try {
    const { jobs } = await json("/v1/jobs");
    const latest = jobs.find((j) => (j.params?.datasets || []).includes(info.name));
    if (latest && dataset.name === info.name) follow(latest);
  } catch { /* no job to show */ }
}

el.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!dataset) return;
  const minutes = Number(el.minutes.value);
  if (!Number.isFinite(minutes) || minutes <= 0 || minutes > 1440) {
    announce(el.hint, "The time budget is 1 to 1440 minutes.", "error");
    return;
  }
  el.start.disabled = true;
  announce(el.hint, "Starting…", "working");
  const response = await sendJson("/v1/jobs", "POST", {
    kind: "finetune", datasets: [dataset.name], name: el.name.value.trim(), time_hours: minutes / 60 });
  el.start.disabled = false;
  if (!response.ok) {
    announce(el.hint, await failure(response, "Starting the job"), "error");
    return;
  }
  announce(el.hint, "");
  follow(await response.json());
});

async function follow(job) {
  const token = ++following;
  current = job;
  render(job);
  while (token === following && (job.state === "queued" || job.state === "running")) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    if (token !== following) return;
    try {
      job = await json(`/v1/jobs/${job.id}`);
    } catch (error) {
      announce(el.status, `Could not follow the job: ${error.message}`, "error");
      continue;
    }
    if (token !== following) return;
    current = job;
    render(job);
  }
}

function render(job) {
  const p = job.progress || {};
  const name = job.params?.name || "?";
  el.job.hidden = false;
  el.job.dataset.state = job.state;
  el.job.dataset.id = String(job.id);
  el.title.textContent = `Job ${job.id}: model ${name}, from ${job.params?.base || "the active model"}, `
    + `taught on ${(job.params?.datasets || []).join(", ")}`;
  const live = job.state === "queued" || job.state === "running";
  el.cancel.hidden = !live;
  el.rerun.hidden = !["failed", "interrupted", "cancelled"].includes(job.state);
  el.bar.hidden = !live && job.state !== "done";
  if (job.state === "queued") {
    el.bar.removeAttribute("value");
    announce(el.status, "Queued: it starts when the job before it ends.", "working");
  } else if (job.state === "running" && !(p.epochs > 0)) {
    el.bar.removeAttribute("value");
    announce(el.status, "Preparing the photos…", "working");
  } else if (job.state === "running") {
    el.bar.max = p.epochs;
    el.bar.value = Math.min(p.epoch, p.epochs);
    const parts = [`Epoch ${p.epoch} of ${p.epochs}`];
    if (p.epoch >= p.epochs) parts.push("scoring base and candidate…");
    else if (Number.isFinite(p.eta_seconds)) parts.push(`about ${duration(p.eta_seconds)} left`);
    if (Number.isFinite(p.elapsed_seconds)) parts.push(`${duration(p.elapsed_seconds)} so far`);
    announce(el.status, parts.join(" · "), "working");
  } else if (job.state === "done") {
    el.bar.max = 1;
    el.bar.value = 1;
    const took = job.result?.wall_seconds ?? p.elapsed_seconds;
    announce(el.status, `Done${Number.isFinite(took) ? ` in ${duration(took)}` : ""}.`, "ok");
  } else {
    const what = { failed: "The job failed", interrupted: "The job was interrupted",
                   cancelled: "The job was cancelled" };
    announce(el.status, `${what[job.state] || job.state}: ${job.error || "no reason given"}`, "error");
  }
  if (job.state === "done" && job.result) showResult(job.result);
  else el.compare.hidden = true;
}

// Base and candidate side by side on the gate's photos (the field's held-out ones, and the public
// val sets replayed: what the candidate may have forgotten).
function showResult(result) {
  // the base's name (the result may carry the report's {name, sha256} under the same key)
  const base = (typeof result.base === "string" ? result.base : result.base?.name) || "the base";
  const head = ["Photos scored", "Photos", `mAP50 ${base}`, `mAP50 ${result.model}`,
                `Weed AP50 ${base}`, `Weed AP50 ${result.model}`];
  const rows = (result.gate || []).map((g) => {
    const row = make("tr");
    row.dataset.dataset = g.dataset;
    row.dataset.role = g.role;
    const cell = (value, key, who) => {
      const td = make("td", { className: "num", textContent: score(value) });
      td.dataset.col = `${who}-${key}`;
      return td;
    };
    const better = (key) => (g.candidate[key] > g.base[key] ? "up" : g.candidate[key] < g.base[key] ? "down" : "");
    const c1 = cell(g.candidate.mAP50, "mAP50", "candidate");
    const c2 = cell(g.candidate.weed_AP50, "weed_AP50", "candidate");
    c1.dataset.change = better("mAP50");
    c2.dataset.change = better("weed_AP50");
    const label = g.role === "field" ? `${g.dataset} (held-out field photos)` : `${g.dataset} (public val set)`;
    row.append(make("th", { scope: "row", textContent: label }),
               make("td", { className: "num", textContent: String(g.base.images) }),
               cell(g.base.mAP50, "mAP50", "base"), c1, cell(g.base.weed_AP50, "weed_AP50", "base"), c2);
    return row;
  });
  const thead = make("thead", {}, make("tr", {}, ...head.map((t) => make("th", { scope: "col", textContent: t }))));
  const caption = `${base} (base) and ${result.model} (candidate) on the same photos`;
  el.table.replaceChildren(make("caption", { textContent: caption }), thead, make("tbody", {}, ...rows));
  const better = result.better ? "The candidate is better" : "The candidate is not better";
  el.verdict.textContent = `${better}: ${result.verdict || ""}`;
  el.verdict.dataset.better = String(Boolean(result.better));
  el.compare.hidden = false;
  showPairs(result, base);
  el.promote.textContent = `Promote ${result.model}`;
  el.promote.dataset.model = result.model;
  checkActive(result.model, result.promoted);
}

// The gate's field photos, each analysed by the base and by the candidate, side by side.
async function showPairs(result, base) {
  const key = `${current?.id}:${result.model}`;
  if (pairsShown === key) return;
  pairsShown = key;
  for (const img of el.pairs.querySelectorAll("img")) URL.revokeObjectURL(img.src);
  el.pairs.replaceChildren();
  for (const field of result.field || []) {
    for (const file of field.gate_images || []) {
      const id = file.replace(/\.[^.]+$/, "");
      const response = await call(`/v1/datasets/${encodeURIComponent(field.name)}/images/${id}?raw=1`);
      if (!response.ok || pairsShown !== key) continue;
      const blob = await response.blob();
      const item = make("li", { className: "pair" });
      item.dataset.id = id;
      el.pairs.append(item);
      for (const [who, model] of [["base", base], ["candidate", result.model]]) {
        item.append(await analysed(blob, file, who, model));
      }
    }
  }
}

async function analysed(blob, file, who, model) {
  const form = new FormData();
  form.append("image", blob, file);
  const img = make("img", { src: URL.createObjectURL(blob), alt: `${file} analysed by ${model}` });
  const figure = make("div", { className: "figure" }, img);
  const caption = make("figcaption");
  const box = make("figure", { className: "pair-side" }, figure, caption);
  box.dataset.who = who;
  const response = await call(`/v1/detect?model=${encodeURIComponent(model)}`, { method: "POST", body: form });
  if (!response.ok) {
    caption.textContent = `${who} ${model}: ${await failure(response, "Detect")}`;
    return box;
  }
  const answer = await response.json();
  const { width, height } = answer.image;
  figure.style.aspectRatio = `${width} / ${height}`;
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "overlay");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  for (const det of answer.detections) {
    const g = document.createElementNS(SVG_NS, "g");
    g.setAttribute("class", "box");
    g.dataset.class = det.class_name;
    for (const part of ["halo", "line"]) {
      const r = document.createElementNS(SVG_NS, "rect");
      const { x1, y1, x2, y2 } = det.box;
      Object.entries({ class: part, x: x1, y: y1, width: x2 - x1, height: y2 - y1,
                       stroke: part === "halo" ? "#0d1a0d" : COLOURS[det.class_name] || "#ffa500" })
        .forEach(([k, v]) => r.setAttribute(k, v));
      g.append(r);
    }
    svg.append(g);
  }
  figure.append(svg);
  const c = answer.counts || {};
  caption.textContent = `${who === "base" ? "Base" : "Candidate"} ${answer.model?.name || model}: `
    + `${c.crop || 0} crop, ${c.weed || 0} weed`;
  box.dataset.model = answer.model?.name || "";
  return box;
}

async function checkActive(model, promoted) {
  let active = null;
  try {
    active = (await json("/v1/models")).active;
  } catch { /* keep the button */ }
  const isActive = active === model || (promoted && active === null);
  el.promote.disabled = isActive;
  el.promoted.textContent = isActive ? `${model} is the active model: new photos are answered by it.` : "";
}

el.promote.addEventListener("click", async () => {
  const model = el.promote.dataset.model;
  if (!model) return;
  el.promote.disabled = true;
  const response = await call(`/v1/models/${encodeURIComponent(model)}/activate`, { method: "POST" });
  if (!response.ok) {
    el.promote.disabled = false;
    announce(el.promoted, await failure(response, "Promoting the candidate"), "error");
    return;
  }
  announce(el.promoted, `${model} is the active model now: the next photo is answered by it.`, "ok");
  await loadModel();   // the model choice shows the new active model
});

el.cancel.addEventListener("click", async () => {
  if (!current) return;
  el.cancel.disabled = true;
  const response = await call(`/v1/jobs/${current.id}`, { method: "DELETE" });
  el.cancel.disabled = false;
  if (!response.ok && response.status !== 409) {
    announce(el.status, await failure(response, "Cancelling"), "error");
    return;
  }
  follow(await json(`/v1/jobs/${current.id}`));
});

el.rerun.addEventListener("click", async () => {
  if (!current) return;
  const response = await call(`/v1/jobs/${current.id}/rerun`, { method: "POST" });
  if (!response.ok) {
    announce(el.status, await failure(response, "Rerunning the job"), "error");
    return;
  }
  follow(await response.json());
});
