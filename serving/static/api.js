/* weedscan page modules: talking to this server (API key, errors) and small shared helpers.
 * The API key and the form that asks for one are auth.js's: a key given once serves every request. */

import { askForKey, authHeaders } from "./auth.js";

// fetch with the API key; a 401 asks the user for a key (auth.js's form), then tries again once.
export async function call(url, options = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const headers = { ...(options.headers || {}), ...authHeaders() };
    const response = await fetch(url, { cache: "no-store", ...options, headers });
    if (response.status !== 401 || attempt > 0) return response;
    await askForKey((await readError(response)).message);
  }
}

export async function readError(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error;
  } catch { /* not JSON */ }
  return { code: "", message: response.statusText || `error ${response.status}` };
}

// The server's message for a failed answer, as a sentence for the page.
export async function failure(response, what) {
  const error = await readError(response);
  return `${what} failed (${response.status}): ${error.message || error.code || "no reason given"}`;
}

export async function json(url, options = {}) {
  const response = await call(url, options);
  if (!response.ok) throw new Error(await failure(response, options.method || "GET"));
  return response.status === 204 ? null : response.json();
}

export function sendJson(url, method, body) {
  return call(url, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

export async function listDatasets() {
  const body = await json("/v1/datasets");
  return body.datasets || [];
}

export const NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;

// "carrot field 2" -> "carrot-field-2": what a dataset or model name may hold.
export function slug(text) {
  return String(text).toLowerCase().normalize("NFKD").replace(/[^a-z0-9_-]+/g, "-")
    .replace(/^[-_]+|-+$/g, "").slice(0, 64);
}

export function plural(n, one, many) {
  return `${n}\u00a0${n === 1 ? one : many}`;
}

export function countsText(counts) {
  const c = counts || {};
  return `${plural(c.crop || 0, "crop", "crops")} · ${plural(c.weed || 0, "weed", "weeds")}`;
}

export function make(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

export function announce(node, text, kind = "") {
  node.textContent = text;
  node.dataset.kind = kind;
}

// Tell the other modules that datasets changed (a save, a delete): they list them again.
export function datasetsChanged(name) {
  document.dispatchEvent(new CustomEvent("weedscan:datasets-changed", { detail: { name } }));
}

export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = make("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
