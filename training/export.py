"""`weedscan export`: .pt -> models/NAME.onnx + models/NAME.json (the model card)."""

from __future__ import annotations

import ast
import csv
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from serving.detector import DetectOptions, Detector
from serving.model_card import ModelCard, Thresholds, card_path_for, sha256_of, write_card
from serving.postprocess import END_TO_END, infer_layout
from serving.preprocess import letterbox, to_blob
from training.evaluate import box_iou, evaluate
from training.offline import import_ultralytics
from training.train import RUN_RECORD
from training.trainset import YoloDataset

DATASET_CARDS_DIR = Path(__file__).resolve().parents[1] / "datasets"
PARITY_MIN_IOU = 0.8  # the .pt letterboxes to a stride multiple, ONNX to a square: boxes move a little
PARITY_MIN_SCORE = 0.4  # boxes near the threshold may flip either way; compare the clear ones
PARITY_MAX_RAW_GAP = 1e-3  # fp32 export vs .pt on the same input: float rounding only


class ParityError(Exception):
    """The exported ONNX model does not reproduce the .pt model's boxes."""


class ExistingModelError(Exception):
    """The export would overwrite a model (and its card) that is already there."""


def run_record_for(weights: Path) -> dict[str, Any]:
    run_dir = weights.resolve().parent.parent
    record_file = run_dir / RUN_RECORD
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    results = run_dir / "results.csv"
    if results.is_file():
        with results.open() as handle:
            record["epochs_completed"] = sum(1 for _ in csv.DictReader(handle))
    return record


def export_onnx(weights: Path, imgsz: int, nms_free: bool = False) -> Path:
    """Dynamic batch (tiles run as one batch). nms_free keeps YOLO26's one-to-one head: output
    (B, 300, 6), no NMS needed; otherwise the raw (B, 4 + nc, N) head with NMS in serving."""
    import_ultralytics()
    from ultralytics import YOLO

    return Path(YOLO(str(weights)).export(format="onnx", imgsz=imgsz, dynamic=True, simplify=True,
                                          nms=False if nms_free else None))


def raw_output_gap(model: Any, detector: Detector, image: np.ndarray) -> float:
    """Largest gap between the .pt and ONNX head outputs on one letterboxed image, relative to
    the output's largest magnitude. Always compares something, even for an untrained model
    with no confident box."""
    import torch

    blob = to_blob([letterbox(image, detector.input_size)[0]])
    reference = detector.session.run(None, {detector.input_name: blob})[0]
    network = model.model.float().eval()
    with torch.no_grad():
        ours = network(torch.from_numpy(blob))
    ours = (ours[0] if isinstance(ours, (list, tuple)) else ours).numpy()
    if ours.shape != reference.shape:
        return float("inf")
    if reference.shape[-1] == 6:  # end-to-end rows are ranked: ties may order them differently
        reference, ours = np.sort(reference[..., 4]), np.sort(ours[..., 4])
    return float(np.abs(ours - reference).max() / max(float(np.abs(reference).max()), 1e-6))


def check_parity(weights: Path, detector: Detector, images: list[Path]) -> dict[str, Any]:
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
            if len(same) and box_iou(box[None], same).max() >= PARITY_MIN_IOU:
                matched += 1
    gap = max(raw_output_gap(model, detector, cv2.imread(str(path))) for path in images[:2])
    report = {"images": len(images), "confident_boxes": checked, "matched": matched,
              "raw_output_max_relative_gap": round(gap, 6)}
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
        card = yaml.safe_load(card_file.read_text()) or {}
        for key in ("title", "homepage", "licence", "license", "citation"):
            if card.get(key):
                entry["licence" if key == "license" else key] = card[key]
    return entry


def build_card(name: str, version: str, onnx_path: Path, detector_inputs: dict[str, Any],
               record: dict[str, Any], metrics: dict[str, Any], parity: dict[str, Any],
               compute: str | None, thresholds: Thresholds | None = None) -> ModelCard:
    config = record.get("config", {})
    data = config.get("data", [])
    training_data = []
    for yaml_path in data:
        try:
            training_data.append(_dataset_entry(yaml_path, "train"))
        except Exception as exc:  # noqa: BLE001 - the card records what could not be read
            training_data.append({"name": Path(yaml_path).parent.name, "error": str(exc)})
    non_commercial = any("non-commercial" in str(d.get("licence", "")).lower() for d in training_data)
    pretrained = record.get("pretrained") or {}
    weights_terms = (f"; starting weights {pretrained['file']}: {pretrained['licence']}"
                     if pretrained.get("licence") else "")
    return ModelCard(**{
        "name": name,
        "version": version,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "sha256": sha256_of(onnx_path),
        "task": "detect",
        "classes": detector_inputs["classes"],
        "input_size": detector_inputs["input_size"],
        "output_layout": detector_inputs["layout"],
        "thresholds": thresholds or Thresholds(),
        "training_data": training_data,
        "training_recipe": {
            "architecture": config.get("model"),
            "pretrained_start": record.get("pretrained"),
            "epochs_completed": record.get("epochs_completed"),
            "image_size": config.get("imgsz"),
            "time_budget_hours": config.get("time"),
            "batch": config.get("batch"),
            "seed": config.get("seed"),
            "repeats": config.get("repeats"),
            "augmentation": record.get("augmentation"),
            "library_versions": record.get("versions"),
            "compute": compute or record.get("machine"),
            "wall_seconds": record.get("wall_seconds"),
        },
        "metrics": metrics,
        "export_parity": parity,
        "licence": ("non-commercial research only (inherits the CWFID terms)" if non_commercial
                    else "see the training data licences") + weights_terms,
        "intended_use": "Detecting crop plants and weeds in top-down field photos (robot cameras, "
                        "hand-held photos) to count weeds, estimate weed cover and drive sprayers.",
        "limitations": measured_limitations(training_data, metrics, pretrained),
    })


def measured_limitations(training_data: list[dict[str, Any]], metrics: dict[str, Any],
                         pretrained: dict[str, Any]) -> list[str]:
    """Known limits from what this model was trained on and how it scored, not boilerplate."""
    sources = ", ".join(f"{d.get('name')} ({d.get('images', '?')} images)" for d in training_data)
    limits = [f"Trained only on {sources or 'unknown data'}; other crops, growth stages, soils "
              "and cameras are untested: check it on your own fields before relying on it."]
    for name, result in sorted(metrics.items()):
        per_class = result.get("per_class", {})
        weakest = min(per_class.items(), key=lambda kv: kv[1]["AP50"]) if per_class else None
        line = (f"{name} val ({result['images']} images, {result['instances']} objects): "
                f"mAP50 {result['mAP50']:.3f}; at conf {result['conf']} it finds "
                f"{result['recall']:.0%} of the plants with {result['precision']:.0%} of its boxes right")
        if weakest:
            line += f"; weakest class {weakest[0]} (AP50 {weakest[1]['AP50']:.3f})"
        if result["images"] < 30:
            line += "; few val images, so this figure is uncertain"
        limits.append(line + ".")
    if any(d.get("name") == "cwfid" for d in training_data):
        limits.append("CWFID images are false-colour (red + near-infrared), not natural RGB.")
    if pretrained:
        limits.append(f"Fine-tuned from {pretrained.get('file')} ({pretrained.get('description') or 'pretrained weights'}); "
                      "whether those are the official release cannot be proven from the file.")
    limits += ["Classes are only 'crop' and 'weed': no weed species.",
               "Not a safety system: sprayer decisions need a human-set confidence threshold and checks."]
    return limits


def onnx_metadata(onnx_path: Path) -> dict[str, Any]:
    """Class names, input size and output layout, from the metadata Ultralytics writes."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    names = ast.literal_eval(meta["names"])
    classes = [names[k] for k in sorted(names)]
    input_size = int(session.get_inputs()[0].shape[2]) if isinstance(
        session.get_inputs()[0].shape[2], int) else int(ast.literal_eval(meta["imgsz"])[0])
    layout = infer_layout(session.get_outputs()[0].shape, len(classes))
    return {"classes": classes, "input_size": input_size, "layout": layout}


def export(weights: Path, name: str, data_yamls: list[Path] | None = None,
           models_dir: Path = Path("models"), version: str | None = None,
           imgsz: int | None = None, compute: str | None = None,
           parity_images: int = 4, split: str = "val", nms_free: bool = False,
           force: bool = False) -> Path:
    """Export, check parity, evaluate on the val splits and write the card; returns the .onnx.
    An existing models_dir/NAME.onnx or NAME.json is replaced only with force."""
    onnx_path = models_dir / f"{name}.onnx"
    existing = [p for p in (onnx_path, card_path_for(onnx_path)) if p.exists()]
    if existing and not force:
        raise ExistingModelError(f"{existing[0]} exists; choose another --name or --models-dir, "
                                 "or pass --force to replace it")
    record = run_record_for(weights)
    config = record.get("config", {})
    imgsz = imgsz or config.get("imgsz") or 640
    data_yamls = data_yamls or [Path(p) for p in config.get("data", [])]
    version = version or dt.date.today().strftime("%Y.%m.%d")

    exported = export_onnx(weights, imgsz, nms_free)
    models_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(exported, onnx_path)
    inputs = onnx_metadata(onnx_path)
    # A first card so the serving detector can load the model for the checks below.
    card = build_card(name, version, onnx_path, inputs, record, {}, {}, compute)
    write_card(onnx_path, card)
    detector = Detector(onnx_path)

    sample = [p for y in data_yamls for p in YoloDataset.from_yaml(y).images(split)[:parity_images]]
    parity = check_parity(weights, detector, sample)
    thresholds = Thresholds()
    metrics: dict[str, Any] = {}
    if data_yamls:
        # The default confidence is the one of maximum F1 on the val images, not a fixed 0.25.
        report = evaluate(onnx_path, data_yamls, split, conf="max-f1")
        metrics = report["datasets"]
        if report["conf_source"] == "max-f1":
            thresholds = Thresholds(conf=report["conf"], conf_source=(
                f"maximum F1 (class mean) over the {split} images of {', '.join(metrics)} together"))
    write_card(onnx_path, build_card(name, version, onnx_path, inputs, record, metrics, parity,
                                     compute, thresholds))
    return onnx_path
