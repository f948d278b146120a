/* Downloads: the summary table (CSV, the format of `weedscan batch`'s summary.csv), the
 * geotagged photos (GeoJSON, as batch's detections.geojson), the detections (JSON), a photo with
 * its boxes (PNG). */

import { saveBlob } from "./api.js";
import { drawBoxes } from "./boxes.js";
import { decimals, el, roundTo, state } from "./state.js";

// As serving/batch/outputs.py: CRLF line ends (RFC 4180), Python's csv quoting, and a text that a
// spreadsheet would run as a formula gets a quote first (a number, a negative latitude, is none).
function csvField(value) {
  let text = String(value);
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
    const fix = photo.answer && photo.answer.gps;
    const place = fix ? [fix.lat, fix.lon] : ["", ""];
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
      gps: p.answer.gps || null,
      detections: p.dets.slice(0, p.visible),
    } : { file: p.name, error: p.failedMessage })),
  };
}

// RFC 7946: a Point ([lon, lat], WGS 84) per analysed photo with a GPS fix, its properties those
// of batch's detections.geojson (the file, a count per class, both covers) at the slider's
// threshold, plus the threshold, the mode and the upload session.
function geojson() {
  const features = state.photos.filter((p) => !p.removed && p.answer && p.answer.gps).map((p) => ({
    type: "Feature",
    geometry: { type: "Point", coordinates: [roundTo(p.answer.gps.lon, 7), roundTo(p.answer.gps.lat, 7)] },
    properties: {
      file: p.name,
      ...Object.fromEntries(state.classes.map((name) => [name, p.counts[name] || 0])),
      weed_cover: Number.isFinite(p.cover) ? roundTo(p.cover, 6) : null,
      weed_box_cover: Number.isFinite(p.boxCover) ? roundTo(p.boxCover, 6) : null,
      conf: state.mode === "green" ? null : Number(state.threshold.toFixed(decimals)),
      mode: state.mode,
      session: p.session.id,
    },
  }));
  return { type: "FeatureCollection", features };
}

function stamp() {
  return new Date().toISOString().slice(0, 16).replace(/[:T]/g, "-");
}

el.csv.addEventListener("click", () => {
  saveBlob(new Blob([summaryCsv()], { type: "text/csv" }), `weedscan-summary-${stamp()}.csv`);
});

el.geojson.addEventListener("click", () => {
  const text = JSON.stringify(geojson(), null, 1);
  saveBlob(new Blob([text], { type: "application/geo+json" }), `weedscan-photos-${stamp()}.geojson`);
});

el.json.addEventListener("click", () => {
  const text = JSON.stringify(detectionsJson(), null, 2);
  saveBlob(new Blob([text], { type: "application/json" }), `weedscan-detections-${stamp()}.json`);
});

export async function downloadPng(photo) {
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
