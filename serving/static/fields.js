/* The field datasets panel: the datasets with their counts, one opened with its saved photos,
 * a saved photo large to relabel (PUT) or delete, and the dataset's zip; jobs.js teaches from it. */

import { NAME_PATTERN, announce, call, countsText, datasetsChanged, failure, json, listDatasets, make,
  plural, saveBlob, sendJson, slug } from "./api.js";
import { createEditor } from "./editor.js";
import { showTeach } from "./jobs.js";

const $ = (id) => document.getElementById(id);
const el = {
  status: $("fields-status"), list: $("dataset-list"), table: $("dataset-table"), refresh: $("fields-refresh"),
  form: $("dataset-form"), newName: $("dataset-name"), newCrop: $("dataset-crop"),
  view: $("dataset-view"), title: $("dataset-title"), counts: $("dataset-counts"), photos: $("dataset-photos"),
  exportZip: $("dataset-export"), close: $("dataset-close"),
  dialog: $("field-viewer"), dialogTitle: $("field-viewer-title"), dialogClose: $("field-viewer-close"),
  figure: $("field-figure"), img: $("field-img"), tools: $("field-tools"), save: $("field-save"),
  remove: $("field-delete"), photoStatus: $("field-status"),
};
const path = (...parts) => `/v1/datasets/${parts.map(encodeURIComponent).join("/images/")}`;
let open = null;        // the dataset shown: its name
let urls = new Map();   // image id -> blob: URL of the photo (the raw route needs the API key)
let editing = null;     // {record, editor} in the photo dialog

// ---- the list ------------------------------------------------------------------------------
async function refresh() {
  let datasets;
  try {
    datasets = await listDatasets();
  } catch (error) {
    announce(el.status, `Could not list the field datasets: ${error.message}`, "error");
    return;
  }
  el.table.hidden = !datasets.length;
  announce(el.status, datasets.length ? ""
    : "No field dataset yet. Open a photo large, correct its boxes and save it to one.");
  el.list.replaceChildren(...datasets.map((d) => {
    const row = make("tr");
    row.dataset.dataset = d.name;
    const name = make("th", { scope: "row" }, make("button", {
      type: "button", className: "button small link", textContent: d.name, ariaLabel: `Open field dataset ${d.name}`,
      onclick: () => openDataset(d.name) }));
    const cells = [["images", d.images], ["crop", d.counts.crop || 0], ["weed", d.counts.weed || 0]].map(([col, n]) => {
      const td = make("td", { className: "num", textContent: String(n) });
      td.dataset.col = col;
      return td;
    });
    row.append(name, make("td", { textContent: d.crop }), ...cells);
    return row;
  }));
  if (open && !datasets.some((d) => d.name === open)) closeDataset();
}

el.refresh.addEventListener("click", refresh);
el.newCrop.addEventListener("input", () => {
  if (!el.newName.dataset.touched) el.newName.value = slug(el.newCrop.value);
});
el.newName.addEventListener("change", () => { el.newName.dataset.touched = "1"; });
el.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = el.newName.value.trim();
  const crop = el.newCrop.value.trim();
  if (!NAME_PATTERN.test(name) || !crop) {
    announce(el.status, "Give the crop and a name of 1-64 lower-case letters, digits, - or _.", "error");
    return;
  }
  const response = await sendJson("/v1/datasets", "POST", { name, crop });
  if (!response.ok) {
    announce(el.status, await failure(response, "Creating the field dataset"), "error");
    return;
  }
  el.newName.value = "";
  el.newCrop.value = "";
  delete el.newName.dataset.touched;
  datasetsChanged(name);
  openDataset(name);
});

// ---- one dataset ---------------------------------------------------------------------------
function forgetUrls() {
  for (const url of urls.values()) URL.revokeObjectURL(url);
  urls = new Map();
}

async function photoUrl(name, id) {
  if (!urls.has(id)) {
    const response = await call(`${path(name, id)}?raw=1`);
    if (!response.ok) throw new Error(await failure(response, "Loading the photo"));
    urls.set(id, URL.createObjectURL(await response.blob()));
  }
  return urls.get(id);
}

async function openDataset(name) {
  if (open !== name) forgetUrls();
  open = name;
  let info;
  let images;
  try {
    [info, { images }] = await Promise.all([json(path(name)), json(`${path(name)}/images`)]);
  } catch (error) {
    announce(el.status, `Could not open ${name}: ${error.message}`, "error");
    return;
  }
  if (open !== name) return;
  el.view.hidden = false;
  el.view.dataset.dataset = name;
  el.title.textContent = `Field dataset ${name} (${info.crop})`;
  el.counts.textContent = `${plural(info.images, "photo", "photos")}; boxes: ${countsText(info.counts)}`;
  for (const row of el.list.children) row.classList.toggle("open", row.dataset.dataset === name);
  el.photos.replaceChildren(...images.map((record) => thumb(name, record)));
  showTeach(info);
}

function thumb(name, record) {
  const img = make("img", { alt: `Saved photo ${record.filename || record.id}`, decoding: "async" });
  img.style.aspectRatio = `${record.width} / ${record.height}`;
  const openButton = make("button", { type: "button", className: "button small", textContent: "Open",
    ariaLabel: `Open ${record.filename || record.id} large`, onclick: () => openPhoto(name, record, openButton) });
  img.addEventListener("click", () => openPhoto(name, record, openButton));
  const item = make("li", { className: "thumb" }, img,
    make("p", { className: "thumb-name", textContent: record.filename || record.id }),
    make("p", { className: "thumb-counts", textContent: countsText(record.counts) }), openButton);
  item.dataset.id = record.id;
  item.dataset.file = record.filename || "";
  photoUrl(name, record.id).then((url) => { img.src = url; }, () => item.classList.add("no-preview"));
  return item;
}

function closeDataset() {
  open = null;
  el.view.hidden = true;
  forgetUrls();
  for (const row of el.list.children) row.classList.remove("open");
}
el.close.addEventListener("click", closeDataset);

el.exportZip.addEventListener("click", async () => {
  if (!open) return;
  const response = await call(`${path(open)}/export`);
  if (!response.ok) {
    announce(el.status, await failure(response, "The export"), "error");
    return;
  }
  saveBlob(await response.blob(), `${open}.zip`);
});

// ---- a saved photo large: relabel or delete --------------------------------------------------
let opener = null;

async function openPhoto(name, record, from) {
  opener = from;
  let labelled;
  let url;
  try {
    [labelled, url] = await Promise.all([json(path(name, record.id)), photoUrl(name, record.id)]);
  } catch (error) {
    announce(el.status, error.message, "error");
    return;
  }
  if (editing) editing.editor.destroy();
  const { width, height } = labelled.image;
  el.dialogTitle.textContent = `${labelled.image.filename || record.id} — field dataset ${name}`;
  el.img.src = url;
  el.img.alt = `Saved photo ${labelled.image.filename || record.id}`;
  el.figure.style.setProperty("--ar", String(width / height));
  el.figure.style.aspectRatio = `${width} / ${height}`;
  el.dialog.dataset.id = record.id;
  announce(el.photoStatus, "");
  if (!el.dialog.open) el.dialog.showModal();
  const editor = createEditor({ figure: el.figure, toolbar: el.tools, keyTarget: el.dialog, width, height,
    labels: labelled.labels, onChange: () => { el.save.disabled = !editor.dirty(); } });
  editing = { name, record: labelled.image, editor };
  el.save.disabled = true;
  el.dialogClose.focus();
}

el.save.addEventListener("click", async () => {
  if (!editing) return;
  const { name, record, editor } = editing;
  el.save.disabled = true;
  announce(el.photoStatus, "Saving…", "working");
  const response = await sendJson(path(name, record.id), "PUT", { labels: editor.labels() });
  if (!response.ok) {
    announce(el.photoStatus, await failure(response, "Saving the boxes"), "error");
    el.save.disabled = false;
    return;
  }
  const saved = await response.json();
  editor.markSaved();
  announce(el.photoStatus, `Saved: ${countsText(saved.image.counts)}.`, "ok");
  datasetsChanged(name);
});

el.remove.addEventListener("click", async () => {
  if (!editing) return;
  const { name, record } = editing;
  // eslint-disable-next-line no-alert
  if (!window.confirm(`Delete ${record.filename || record.id} and its boxes from ${name}?`)) return;
  const response = await call(path(name, record.id), { method: "DELETE" });
  if (!response.ok) {
    announce(el.photoStatus, await failure(response, "Deleting the photo"), "error");
    return;
  }
  el.dialog.close();
  announce(el.status, `Deleted ${record.filename || record.id} from ${name}.`, "ok");
  datasetsChanged(name);
});

el.dialogClose.addEventListener("click", () => el.dialog.close());
el.dialog.addEventListener("click", (event) => { if (event.target === el.dialog) el.dialog.close(); });
el.dialog.addEventListener("close", () => {
  if (editing && editing.editor.dirty()) {
    const { record } = editing;
    announce(el.status, `Your changes to ${record.filename || record.id} were not saved.`, "error");
  }
  if (editing) editing.editor.destroy();
  editing = null;
  if (opener && opener.isConnected) opener.focus();
});

document.addEventListener("weedscan:datasets-changed", async () => {
  await refresh();
  if (open) openDataset(open);
});

refresh();
