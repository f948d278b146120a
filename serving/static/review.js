/* Review mode in the large view of an analysed photo: correct the model's boxes (editor.js) and
 * save the photo with them to a field dataset, an existing one or a new one named here. The
 * boxes travel in pixels of the upright image, as /v1/detect answered them. */

import { NAME_PATTERN, announce, call, countsText, datasetsChanged, failure, listDatasets, make, sendJson,
  slug } from "./api.js";
import { createEditor } from "./editor.js";
import { shownBoxes } from "./results.js";

const NEW = "__new__";
const $ = (id) => document.getElementById(id);
const el = {
  viewer: $("viewer"), figure: $("viewer-figure"), start: $("review-start"), tools: $("review-tools"),
  form: $("review-save"), dataset: $("review-dataset"), fresh: $("review-new"),
  name: $("review-new-name"), crop: $("review-new-crop"), save: $("review-save-button"),
  status: $("review-save-status"),
};
let photo = null;      // the photo in the viewer
let editor = null;
let datasets = [];
let chosen = "";       // the dataset last saved to: chosen again next time
let saving = false;    // (the button stays enabled: disabling it would drop the keyboard focus)

function keep() {
  if (editor && photo) photo.review = { answer: photo.answer, labels: editor.labels() };
}

function startReview() {
  if (!photo || editor) return;
  const kept = photo.review && photo.review.answer === photo.answer ? photo.review.labels : null;
  const { width, height } = photo.answer.image;
  editor = createEditor({
    figure: el.figure, toolbar: el.tools, keyTarget: el.viewer, width, height,
    labels: kept || shownBoxes(photo), onChange: keep,
  });
  keep();
  el.start.setAttribute("aria-pressed", "true");
  el.start.textContent = "Stop correcting";
  el.form.hidden = false;
  announce(el.status, "");
  refreshDatasets();
  el.figure.querySelector(".review-layer").focus?.();
}

function stopReview() {
  if (!editor) return;
  keep();
  editor.destroy();
  editor = null;
  el.start.setAttribute("aria-pressed", "false");
  el.start.textContent = "Correct the boxes";
  el.form.hidden = true;
}

async function refreshDatasets() {
  try {
    datasets = await listDatasets();
  } catch (error) {
    announce(el.status, `Could not list the field datasets: ${error.message}`, "error");
    datasets = [];
  }
  const options = datasets.map((d) => make("option", {
    value: d.name, textContent: `${d.name} (${d.crop}, ${d.images} photo${d.images === 1 ? "" : "s"})` }));
  options.push(make("option", { value: NEW, textContent: "New field dataset…" }));
  el.dataset.replaceChildren(...options);
  el.dataset.value = datasets.some((d) => d.name === chosen) ? chosen : datasets.length ? datasets[0].name : NEW;
  choose();
}

function choose() {
  const isNew = el.dataset.value === NEW;
  el.fresh.hidden = !isNew;
  const name = isNew ? el.name.value.trim() : el.dataset.value;
  el.save.textContent = name ? `Save to field dataset ${name}` : "Save to a new field dataset";
}

el.dataset.addEventListener("change", choose);
el.name.addEventListener("input", choose);
el.crop.addEventListener("input", () => {
  if (!el.name.dataset.touched) {
    el.name.value = slug(el.crop.value);
    choose();
  }
});
el.name.addEventListener("change", () => { el.name.dataset.touched = "1"; });

async function createDataset(name, crop) {
  const response = await sendJson("/v1/datasets", "POST", { name, crop });
  if (response.status === 409) {
    throw new Error(`A field dataset named ${name} exists already: choose it in the list.`);
  }
  if (!response.ok) throw new Error(await failure(response, "Creating the field dataset"));
}

async function save(event) {
  event.preventDefault();
  if (!editor || !photo || saving) return;
  let name = el.dataset.value;
  const isNew = name === NEW;
  if (isNew) {
    name = el.name.value.trim();
    const crop = el.crop.value.trim();
    if (!crop) {
      announce(el.status, "Say which crop grows in this field (e.g. carrot).", "error");
      el.crop.focus();
      return;
    }
    if (!NAME_PATTERN.test(name)) {
      announce(el.status, "The name takes 1-64 lower-case letters, digits, - or _, starting with a "
        + "letter or digit.", "error");
      el.name.focus();
      return;
    }
  }
  saving = true;
  el.save.setAttribute("aria-disabled", "true");
  announce(el.status, "Saving…", "working");
  const labels = editor.labels();
  try {
    if (isNew) await createDataset(name, el.crop.value.trim());
    const form = new FormData();
    form.append("image", photo.file, photo.name);
    form.append("labels", JSON.stringify(labels));
    const response = await call(`/v1/datasets/${encodeURIComponent(name)}/images`, { method: "POST", body: form });
    if (!response.ok) throw new Error(await failure(response, "Saving the photo"));
    const saved = await response.json();
    chosen = name;
    editor.markSaved();
    el.form.dataset.savedId = saved.image.id;
    announce(el.status, `Saved to field dataset ${name}: ${saved.created ? "a new photo"
      : "the photo was there already, its boxes replaced"} (${countsText(saved.image.counts)}).`, "ok");
    if (isNew) {
      el.name.value = "";
      el.crop.value = "";
      delete el.name.dataset.touched;
    }
    datasetsChanged(name);
  } catch (error) {
    announce(el.status, error.message, "error");
    if (isNew) refreshDatasets();
  } finally {
    saving = false;
    el.save.removeAttribute("aria-disabled");
  }
}
el.form.addEventListener("submit", save);

el.start.addEventListener("click", () => (editor ? stopReview() : startReview()));

document.addEventListener("weedscan:viewer-open", (event) => {
  stopReview();
  photo = event.detail.photo;
  const green = photo.mode === "green";
  el.start.hidden = false;
  el.start.title = green ? "The plant boxes come in as weeds: switch the crop ones." : "";
  if (photo.review && photo.review.answer === photo.answer) startReview();   // edits kept
});

el.viewer.addEventListener("close", () => {
  stopReview();
  photo = null;
});

document.addEventListener("weedscan:datasets-changed", () => { if (editor) refreshDatasets(); });
