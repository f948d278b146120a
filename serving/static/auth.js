/* The API key: kept in this tab's sessionStorage, asked for by a form when the server says 401. */

import { applyModel } from "./models.js";
import { el } from "./state.js";
import { setStatusText, updateProgress } from "./uploads.js";

const KEY_STORAGE = "weedscan.apiKey";

let apiKey = safeSessionGet(KEY_STORAGE) || "";
export let keyWaiter = null;  // {promise, resolve} while uploads wait for an API key

function safeSessionGet(name) {
  try { return window.sessionStorage.getItem(name); } catch { return null; }
}

function safeSessionSet(name, value) {
  try { window.sessionStorage.setItem(name, value); } catch { /* private mode: keep in memory */ }
}

export function authHeaders() {
  return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
}

export function askForKey(serverMessage) {
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
