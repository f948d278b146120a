"""`weedscan export`: .pt -> models/NAME.onnx + models/NAME.json (the model card)."""

from __future__ import annotations

import ast
import csv
import datetime as dt
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from pydantic import BaseModel

from serving.detector import DetectOptions, Detector
from serving.model_card import (
    ModelCard,
    Thresholds,
    card_path_for,
    sha256_of,
    write_card,
)
from serving.postprocess import END_TO_END, infer_layout
from serving.preprocess import letterbox, to_blob
from training.evaluate import DatasetScores, box_iou, evaluate
from training.lineage import lineage_of_run
from training.offline import import_ultralytics
from training.precision import check_precisions, record_precisions
from training.train import RunRecord
from training.trainset import YoloDataset

REPO = Path(__file__).resolve().parents[1]
DATASET_CARDS_DIR = REPO / "datasets"
PARITY_MIN_IOU = 0.8  # the .pt letterboxes to a stride multiple, ONNX to a square: boxes move a little
PARITY_MIN_SCORE = 0.4  # boxes near the threshold may flip either way; compare the clear ones
PARITY_MAX_RAW_GAP = 1e-3  # fp32 export vs .pt on the same input: float rounding only
PARITY_MAX_CORNER_SHIFT = 1.0  # pixels: the same box, when IoU cannot tell (no area)


class ParityError(Exception):
    """The exported ONNX model does not reproduce the .pt model's boxes."""


class ExistingModelError(Exception):
    """The export would overwrite a model (and its card) that is already there."""


class OnnxInputs(BaseModel):
    """What the exported file itself says the detector needs (its Ultralytics metadata), and the
    grey frame the served detector keeps around each image."""

    classes: list[str]
    input_size: int
    layout: str  # raw or end2end (serving/postprocess.py)
    stride: int = 32
    input_border: int = 0


class ParityReport(BaseModel):
    """How the ONNX export agreed with the .pt model (the card's export_parity)."""

    images: int
    confident_boxes: int
    matched: int
    raw_output_max_relative_gap: float


def run_record_for(weights: Path) -> RunRecord:
    """The record of the run that made `weights` (RUN_DIR/weights/X.pt), with the epochs it
    completed; an empty record when the weights come from elsewhere."""
    run_dir = weights.resolve().parent.parent
    record = RunRecord.read(run_dir)
    results = run_dir / "results.csv"
    if results.is_file():
        with results.open(encoding="utf-8") as handle:
            record.epochs_completed = sum(1 for _ in csv.DictReader(handle))
    return record


def export_onnx(weights: Path, imgsz: int, nms_free: bool = False) -> Path:
    """Dynamic batch (tiles run as one batch). nms_free keeps YOLO26's one-to-one head: output
    (B, 300, 6), no NMS needed; otherwise the raw (B, 4 + nc, N) head with NMS in serving."""
    import_ultralytics()
    from ultralytics import YOLO

    return Path(YOLO(str(weights)).export(format="onnx", imgsz=imgsz, dynamic=True, simplify=True,
                                          nms=False if nms_free else None))


def raw_output_gap(model: Any, detector: Detector, image: np.ndarray) -> float:
    """Largest gap between the .pt and ONNX head outputs on one letterboxed image, boxes relative
    to the largest box coordinate and scores to the largest score (pixels would drown the
    scores). Always compares something, even for an untrained model with no confident box."""
    import torch

    blob = to_blob([letterbox(image, detector.input_size)[0]])
    reference = detector.engine.run(blob)
    network = model.model.float().eval()
    with torch.no_grad():
        ours = network(torch.from_numpy(blob))
    ours = (ours[0] if isinstance(ours, (list, tuple)) else ours).numpy()
    if ours.shape != reference.shape:
        return float("inf")
    if detector.layout == END_TO_END:
        return end_to_end_gap(reference, ours)
    # Raw: (B, 4 + nc, N), box centre and size in pixels, then one probability per class.
    return max(_relative_gap(ours[:, :4], reference[:, :4]), _relative_gap(ours[:, 4:], reference[:, 4:]))


def _relative_gap(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(ours - reference).max() / max(float(np.abs(reference).max()), 1e-6))


def end_to_end_gap(reference: np.ndarray, ours: np.ndarray) -> float:
    """The gap between two (B, K, 6) end-to-end outputs (x1, y1, x2, y2, score, class). The rows
    are ranked by score, and near-equal scores may rank either way, so the scores compare sorted,
    and each reference row's box compares with the closest box of ours of the same class and
    (within PARITY_MAX_RAW_GAP) the same score; rows tied with the last-ranked score are left out
    of the box comparison, as either side may have cut a different one of them."""
    score_gap = _relative_gap(np.sort(ours[..., 4], axis=-1), np.sort(reference[..., 4], axis=-1))
    score_tolerance = PARITY_MAX_RAW_GAP * max(float(np.abs(reference[..., 4]).max()), 1e-6)
    box_scale = max(float(np.abs(reference[..., :4]).max()), 1e-6)
    box_gap = 0.0
    for ref, own in zip(reference, ours):
        rows = ref[ref[:, 4] > ref[:, 4].min() + score_tolerance]
        if not len(rows):
            continue
        same = ((np.abs(rows[:, None, 4] - own[None, :, 4]) <= score_tolerance)
                & (rows[:, None, 5] == own[None, :, 5]))
        distance = np.abs(rows[:, None, :4] - own[None, :, :4]).max(axis=-1)
        closest = np.where(same, distance, np.inf).min(axis=1)
        box_gap = max(box_gap, float(closest.max()) / box_scale)
    return max(score_gap, box_gap)


def check_parity(weights: Path, detector: Detector, images: list[Path]) -> ParityReport:
    """The raw outputs must agree within PARITY_MAX_RAW_GAP, and every confident .pt box must
    have an ONNX box of its class with IoU >= PARITY_MIN_IOU."""
    if not images:
        raise ParityError("no images to check the export on")
    import_ultralytics()
    from ultralytics import YOLO

    model = YOLO(str(weights))
    if hasattr(model.model, "end2end"):  # compare like with like: the head the ONNX model has
        model.model.end2end = detector.layout == END_TO_END
    checked = matched = 0
    for path in images:
        image = cv2.imread(str(path))
        ref = model.predict(image, imgsz=detector.input_size, conf=detector.default_conf,
                            iou=detector.default_iou, verbose=False)[0].boxes
        ref_boxes, ref_cls = ref.xyxy.cpu().numpy(), ref.cls.cpu().numpy().astype(int)
        ref_conf = ref.conf.cpu().numpy()
        ours = detector.detect(image, DetectOptions(tile="off")).detections
        for box, cls, conf in zip(ref_boxes, ref_cls, ref_conf):
            if conf < PARITY_MIN_SCORE:
                continue
            checked += 1
            same = ours.boxes[ours.class_ids == cls]
            if len(same) and (box_iou(box[None], same).max() >= PARITY_MIN_IOU
                              # a box of no area (clipped flat to an edge) has no IoU, even with itself
                              or np.abs(same - box).max(axis=1).min() <= PARITY_MAX_CORNER_SHIFT):
                matched += 1
    gap = max(raw_output_gap(model, detector, cv2.imread(str(path))) for path in images[:2])
    report = ParityReport(images=len(images), confident_boxes=checked, matched=matched,
                          raw_output_max_relative_gap=round(gap, 6))
    if not gap <= PARITY_MAX_RAW_GAP:
        raise ParityError(f"the ONNX model's raw output differs from the .pt model's by {gap:.3g} "
                          f"of its scale (allowed {PARITY_MAX_RAW_GAP})")
    if checked and matched < checked:
        raise ParityError(f"the ONNX model misses {checked - matched} of {checked} confident boxes "
                          f"of the .pt model on {len(images)} images")
    return report


def _dataset_entry(yaml_path: str, split: str) -> dict[str, Any]:
    ds = YoloDataset.from_yaml(yaml_path)
    entry: dict[str, Any] = {"name": ds.name, "split": split, "images": len(ds.images(split))}
    card_file = DATASET_CARDS_DIR / f"{ds.name}.yaml"
    if card_file.is_file():
        card = yaml.safe_load(card_file.read_text(encoding="utf-8")) or {}
        for key in ("title", "homepage", "licence", "license", "citation"):
            if card.get(key):
                entry["licence" if key == "license" else key] = card[key]
    return entry


def build_card(name: str, version: str, onnx_path: Path, inputs: OnnxInputs, record: RunRecord,
               metrics: dict[str, DatasetScores], parity: ParityReport | None,
               compute: str | None, thresholds: Thresholds | None = None) -> ModelCard:
    config = record.config
    training_data = []
    for yaml_path in config.data if config else []:
        try:
            training_data.append(_dataset_entry(yaml_path, "train"))
        except Exception as exc:  # noqa: BLE001 - the card records what could not be read
            training_data.append({"name": Path(yaml_path).parent.name, "error": str(exc)})
    non_commercial = any("non-commercial" in str(d.get("licence", "")).lower() for d in training_data)
    pretrained = record.pretrained or {}
    weights_terms = (f"; starting weights {pretrained['file']}: {pretrained['licence']}"
                     if pretrained.get("licence") else "")
    return ModelCard(**without_absolute_paths({
        "name": name,
        "version": version,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "sha256": sha256_of(onnx_path),
        "task": "detect",
        "classes": inputs.classes,
        "input_size": inputs.input_size,
        "input_border": inputs.input_border,
        "output_layout": inputs.layout,
        "thresholds": thresholds or Thresholds(),
        "training_data": training_data,
        "training_recipe": {
            "architecture": config.model if config else None,
            "pretrained_start": record.pretrained,
            "epochs_completed": record.epochs_completed,
            "image_size": config.imgsz if config else None,
            "time_budget_hours": config.time if config else None,
            "batch": config.batch if config else None,
            "seed": config.seed if config else None,
            "repeats": config.repeats if config else None,
            "augmentation": record.augmentation or None,
            "library_versions": record.versions or None,
            "compute": compute or (record.machine.model_dump() if record.machine else None),
            "wall_seconds": record.wall_seconds,
        },
        "metrics": {name: scores.card_entry() for name, scores in metrics.items()},
        "export_parity": parity.model_dump() if parity else {},
        "licence": ("non-commercial research only (inherits the CWFID terms)" if non_commercial
                    else "see the training data licences") + weights_terms,
        "lineage": [e.model_dump() for e in lineage_of_run(config.weights if config else None, record.pretrained)],
        "intended_use": intended_use(inputs.classes, training_data),
        "limitations": measured_limitations(training_data, metrics, pretrained, inputs.classes),
    }))


def _quoted(names: list[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    return " and ".join(quoted) if len(quoted) < 3 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def intended_use(classes: list[str], training_data: list[dict[str, Any]]) -> str:
    """What the model is for, from what it detects and what it learnt from."""
    sources = ", ".join(str(d.get("name")) for d in training_data) or "unknown data"
    use = (f"Detecting {_quoted(classes)} in images like those it was trained on ({sources}), "
           "to count each class and estimate its cover")
    return use + (", e.g. to guide weeding or spraying." if "weed" in classes else ".")


# An absolute path on this machine: "/" after a space, "(", a quote or the start, whose first
# folder exists here (so URLs, "a/b" and "/v1/models" in prose are left alone).
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[\w.+-]+(?:/[\w.+-]+)*")


def _relative(match: re.Match[str]) -> str:
    path = Path(match.group(0))
    if len(path.parts) < 3 or not Path(path.parts[0], path.parts[1]).is_dir():
        return match.group(0)
    try:  # normpath, not resolve: a symlinked data.yaml is named where it was given
        return Path(os.path.normpath(path)).relative_to(REPO).as_posix()
    except ValueError:
        return path.name


def without_absolute_paths(value: Any) -> Any:  # noqa: ANN401 - any JSON value
    """The card names files relative to the repository (or by file name), never where this
    machine keeps them."""
    if isinstance(value, str):
        return _ABSOLUTE_PATH.sub(_relative, value)
    if isinstance(value, dict):
        return {k: without_absolute_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_absolute_paths(v) for v in value]
    return value


def measured_limitations(training_data: list[dict[str, Any]], metrics: dict[str, DatasetScores],
                         pretrained: dict[str, Any], classes: list[str]) -> list[str]:
    """Known limits from what this model was trained on and how it scored, not boilerplate."""
    sources = ", ".join(f"{d.get('name')} ({d.get('images', '?')} images)" for d in training_data)
    limits = [f"Trained only on {sources or 'unknown data'}; other crops, growth stages, soils "
              "and cameras are untested: check it on your own fields before relying on it."]
    for name, result in sorted(metrics.items()):
        weakest = min(result.per_class.items(), key=lambda kv: kv[1].AP50) if result.per_class else None
        line = (f"{name} val ({result.images} images, {result.instances} objects): "
                f"mAP50 {result.mAP50:.3f}; at conf {result.conf} it finds "
                f"{result.recall:.0%} of the plants with {result.precision:.0%} of its boxes right")
        if weakest:
            line += f"; weakest class {weakest[0]} (AP50 {weakest[1].AP50:.3f})"
        if result.images < 30:
            line += "; few val images, so this figure is uncertain"
        limits.append(line + ".")
    if any(d.get("name") == "cwfid" for d in training_data):
        limits.append("CWFID images are false-colour (red + near-infrared), not natural RGB.")
    if pretrained:
        description = pretrained.get("description") or "pretrained weights"
        limits.append(f"Fine-tuned from {pretrained.get('file')} ({description}); "
                      "whether those are the official release cannot be proven from the file.")
    limits += [f"The only {'class is' if len(classes) == 1 else 'classes are'} {_quoted(classes)}: "
               "it tells no species apart.",
               "Not a safety system: sprayer decisions need a human-set confidence threshold and checks."]
    return limits


def onnx_metadata(onnx_path: Path) -> OnnxInputs:
    """Class names, input size and output layout, from the metadata Ultralytics writes."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    names = ast.literal_eval(meta["names"])
    classes = [names[k] for k in sorted(names)]
    input_size = int(session.get_inputs()[0].shape[2]) if isinstance(
        session.get_inputs()[0].shape[2], int) else int(ast.literal_eval(meta["imgsz"])[0])
    layout = infer_layout(session.get_outputs()[0].shape, len(classes))
    return OnnxInputs(classes=classes, input_size=input_size, layout=layout,
                      stride=int(meta.get("stride", 32)))


def export(weights: Path, name: str, data_yamls: list[Path] | None = None,
           models_dir: Path = Path("models"), version: str | None = None,
           imgsz: int | None = None, compute: str | None = None,
           parity_images: int = 4, split: str = "val", nms_free: bool = False,
           force: bool = False, input_border: int | None = None, precision_checks: bool = True) -> Path:
    """Export, check parity, evaluate on the val splits and write the card; returns the .onnx.
    `precision_checks`: also score each engine and precision this CPU offers (training/precision.py)
    into the card, so the server's `auto` may use the ones that kept accuracy.
    An existing models_dir/NAME.onnx or NAME.json is replaced only with force, and only by a
    model that passed the checks: they run on a copy in a hidden folder inside models_dir, moved
    into place at the end; a failed check leaves models_dir as it was. `input_border` (None:
    half the stride, 16 px) is the grey frame the served detector keeps around each image."""
    onnx_path = models_dir / f"{name}.onnx"
    card_path = card_path_for(onnx_path)
    existing = [p for p in (onnx_path, card_path) if p.exists()]
    if existing and not force:
        raise ExistingModelError(f"{existing[0]} exists; choose another --name or --models-dir, "
                                 "or pass --force to replace it")
    record = run_record_for(weights)
    imgsz = imgsz or (record.config.imgsz if record.config else None) or 640
    data_yamls = data_yamls or [Path(p) for p in (record.config.data if record.config else [])]
    version = version or dt.date.today().strftime("%Y.%m.%d")

    exported = export_onnx(weights, imgsz, nms_free)
    models_dir.mkdir(parents=True, exist_ok=True)
    # Same folder, same filesystem: the final os.replace is a rename, never a half-written file.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-export-", dir=models_dir))
    try:
        staged = staging / onnx_path.name
        shutil.copyfile(exported, staged)
        inputs = onnx_metadata(staged)
        # Half a stride of grey around the image, as Ultralytics' validator pads the val images
        # (rect batches, pad 0.5) that chose best.pt: without it the model sees the image's edge as
        # a cut and adds boxes for part-plants there (measured: benchmarks/results/input_border.md).
        inputs.input_border = inputs.stride // 2 if input_border is None else input_border
        # A first card so the serving detector can load the model for the checks below.
        write_card(staged, build_card(name, version, staged, inputs, record, {}, None, compute))
        detector = Detector(staged, input_border=0)  # Ultralytics' predict fills the input

        sample = [p for y in data_yamls for p in YoloDataset.from_yaml(y).images(split)[:parity_images]]
        parity = check_parity(weights, detector, sample)
        thresholds = Thresholds()
        metrics: dict[str, DatasetScores] = {}
        if data_yamls:
            # The default confidence is the one of maximum F1 on the val images, not a fixed 0.25.
            report = evaluate(staged, data_yamls, split, conf="max-f1", engine="onnxruntime", precision="fp32")
            metrics = report.datasets
            if report.conf_source == "max-f1":
                thresholds = Thresholds(conf=report.conf, conf_source=(
                    f"maximum F1 (class mean) over the {split} images of {', '.join(metrics)} together"))
        write_card(staged, build_card(name, version, staged, inputs, record, metrics, parity,
                                      compute, thresholds))
        if data_yamls and precision_checks:  # what `auto` may serve it in on this CPU
            record_precisions(staged, check_precisions(staged, data_yamls, split, scored=report))
        if not force and any(p.exists() for p in (onnx_path, card_path)):  # written meanwhile
            raise ExistingModelError(f"{onnx_path} appeared during the export; pass --force to replace it")
        # The model first: until its card follows, the old card's sha256 refuses the pair.
        os.replace(staged, onnx_path)
        os.replace(card_path_for(staged), card_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return onnx_path
