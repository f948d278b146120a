/* The per-field summary: each time photos are added (one pick or one drop, say one walk over a
 * field) they form an upload session; a row per session with its photos, its counts per class,
 * the mean cover of its photos at the slider's threshold, and how many of its answers look
 * unreliable (reliability.js): many of them say the model does not know this field. */

import { plural } from "./api.js";
import { el, state } from "./state.js";
import { columnLabel, coverTitle, meanCoverText } from "./table.js";

const time = (date) => date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

function cell(tag, text, props = {}) {
  return Object.assign(document.createElement(tag), { textContent: text, ...props });
}

export function renderSessions() {
  const sessions = state.sessions.map((session) => ({
    session,
    photos: state.photos.filter((p) => p.session === session && !p.removed),
  })).filter((s) => s.photos.length);
  el.sessionsWrap.hidden = sessions.length < 1;
  if (!sessions.length) return;
  el.sessionsHead.replaceChildren(...["Upload session", "Photos", ...state.classes.map(columnLabel),
    `Mean ${coverTitle().toLowerCase()}`, "Unreliable answers"].map((text, i) => cell("th", text, { scope: "col", className: i ? "num" : "" })));
  el.sessionsBody.replaceChildren(...sessions.map(({ session, photos }) => {
    const done = photos.filter((p) => p.answer);
    const failed = photos.filter((p) => p.status === "failed").length;
    const row = document.createElement("tr");
    row.dataset.session = String(session.id);
    row.append(
      cell("th", `Upload ${session.id} (${time(session.started)})`, { scope: "row" }),
      cell("td", `${done.length}${failed ? ` + ${plural(failed, "failed", "failed")}` : ""}`,
           { className: "num", title: `${plural(photos.length, "photo", "photos")} added` }),
      ...state.classes.map((name) => {
        const td = cell("td", String(done.reduce((sum, p) => sum + (p.counts[name] || 0), 0)), { className: "num" });
        td.dataset.col = name;
        return td;
      }),
      cell("td", done.length ? meanCoverText(done) : "…", { className: "num" }),
      cell("td", state.mode === "green" ? "–" : String(done.filter((p) => p.judgement?.reasons.length).length),
           { className: "num" }),
    );
    row.lastElementChild.dataset.col = "unreliable";
    row.lastElementChild.previousElementSibling.dataset.col = "mean_cover";
    row.children[1].dataset.col = "photos";
    return row;
  }));
}
