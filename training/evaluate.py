"""`weedscan eval`: score the exported ONNX model through the serving detector, per dataset.

Matching follows Ultralytics' validator (greedy by confidence at IoU 0.50:0.95); AP, P and R at
max-F1 come from Ultralytics' own DetMetrics, so the numbers agree with `yolo val`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from serving.answer import ModelRef
from serving.detector import DetectOptions, Detector
from serving.engines.choose import EngineRequest, PrecisionRequest
from training.trainset import YoloDataset, labels_folder

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
TileMode = Literal["auto", "on", "off"]
EVAL_CONF, EVAL_IOU, EVAL_MAX_DET = 0.001, 0.7, 300  # Ultralytics' val settings


class ClassScores(BaseModel):
    """One class on one dataset: AP over all thresholds, P and R at the report's conf."""

    model_config = ConfigDict(populate_by_name=True)

    instances: int
    AP50: float = 0.0
    AP50_95: float = Field(0.0, alias="AP50-95")
    precision: float
    recall: float


class MaxF1(BaseModel):
    conf: float | None = Field(description="confidence where the class-mean F1 peaks (None: no box)")
    f1: float


class DatasetScores(BaseModel):
    """One dataset's scores (what a model card's `metrics` holds per dataset)."""

    model_config = ConfigDict(populate_by_name=True)

    images: int
    instances: int
    mAP50: float
    mAP50_95: float = Field(alias="mAP50-95")
    precision: float = Field(description="at `conf`, IoU 0.5")
    recall: float = Field(description="at `conf`, IoU 0.5")
    conf: float
    max_f1: MaxF1
    per_class: dict[str, ClassScores]

    def card_entry(self) -> dict[str, Any]:
        """As a model card's `metrics` holds it (the JSON report's keys)."""
        return self.model_dump(mode="json", by_alias=True)


class EvalReport(BaseModel):
    """What `weedscan eval` writes: the model, how it was scored, the scores per dataset."""

    model: ModelRef
    split: str
    conf: float = Field(description="the confidence precision and recall are taken at")
    conf_source: Literal["given", "card", "max-f1"]
    tile: TileMode = Field(description="how big photos were tiled, as the API's query")
    datasets: dict[str, DatasetScores]

    def card_metrics(self) -> dict[str, dict[str, Any]]:
        return {name: scores.card_entry() for name, scores in self.datasets.items()}


@dataclass
class ImageStats:
    tp: np.ndarray  # (N, 10) bool
    conf: np.ndarray
    pred_cls: np.ndarray
    target_cls: np.ndarray
    pred_boxes: np.ndarray
    target_boxes: np.ndarray
    name: str


def read_labels(label_file: Path, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """YOLO label file -> (classes, xyxy pixel boxes)."""
    if not label_file.is_file() or not label_file.read_text(encoding="utf-8").strip():
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
    rows = np.array([line.split()[:5] for line in label_file.read_text(encoding="utf-8").splitlines() if line.strip()],
                    np.float32)
    cls = rows[:, 0].astype(np.int64)
    cx, cy, w, h = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, rows[:, 4] * height
    return cls, np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).prod(1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def match(pred_boxes: np.ndarray, pred_cls: np.ndarray, gt_boxes: np.ndarray,
          gt_cls: np.ndarray) -> np.ndarray:
    """Greedy matching, predictions in descending confidence: (N, 10) true-positive matrix."""
    correct = np.zeros((len(pred_boxes), len(IOU_THRESHOLDS)), bool)
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return correct
    iou = box_iou(gt_boxes, pred_boxes) * (gt_cls[:, None] == pred_cls[None, :])
    claimed = np.zeros((len(gt_boxes), len(IOU_THRESHOLDS)), bool)
    for j in np.flatnonzero((iou >= IOU_THRESHOLDS.min()).any(0)):
        available = np.where(claimed, 0, iou[:, j, None])
        best = available.argmax(0)
        correct[j] = available[best, range(len(IOU_THRESHOLDS))] >= IOU_THRESHOLDS
        claimed[best, range(len(IOU_THRESHOLDS))] |= correct[j]
    return correct


def collect(detector: Detector, dataset: YoloDataset, split: str,
            tile: TileMode = "auto") -> list[ImageStats]:
    """Each image's matches, its boxes found as the server finds them: `tile` as the API's
    query (`auto`, the server's default, tiles photos much larger than the model input)."""
    stats = []
    labels_dir = labels_folder(dataset.splits[split])
    for image_path in tqdm(dataset.images(split), desc=f"eval {dataset.name}/{split}", unit="img"):
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot decode {image_path}")
        height, width = image.shape[:2]
        rel = image_path.relative_to(dataset.splits[split]).with_suffix(".txt")
        gt_cls, gt_boxes = read_labels(labels_dir / rel, width, height)
        result = detector.detect(image, DetectOptions(conf=EVAL_CONF, iou=EVAL_IOU,
                                                      max_det=EVAL_MAX_DET, tile=tile, cover="off"))
        dets = result.detections  # sorted by confidence
        stats.append(ImageStats(match(dets.boxes, dets.class_ids, gt_boxes, gt_cls),
                                dets.scores, dets.class_ids, gt_cls, dets.boxes, gt_boxes,
                                image_path.name))
    return stats


def _at_threshold(stats: list[ImageStats], conf: float, class_id: int | None) -> tuple[float, float]:
    """Precision and recall at IoU 0.5 counting only boxes with confidence >= conf."""
    tp = fp = n_gt = 0
    for s in stats:
        keep = s.conf >= conf
        if class_id is not None:
            keep &= s.pred_cls == class_id
            n_gt += int((s.target_cls == class_id).sum())
        else:
            n_gt += len(s.target_cls)
        tp += int(s.tp[keep, 0].sum())
        fp += int((~s.tp[keep, 0]).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / n_gt if n_gt else 0.0
    return precision, recall


def _det_metrics(stats: list[ImageStats], names: list[str], plots_dir: Path | None = None) -> Any:  # noqa: ANN401
    """Ultralytics' DetMetrics over these images, processed (AP, P/R/F1 curves)."""
    from training.offline import import_ultralytics

    import_ultralytics()
    from ultralytics.utils.metrics import DetMetrics

    metrics = DetMetrics(names=dict(enumerate(names)))
    for s in stats:
        metrics.update_stats({"tp": s.tp, "conf": s.conf, "pred_cls": s.pred_cls,
                              "target_cls": s.target_cls, "target_img": np.unique(s.target_cls),
                              "im_name": s.name})
    if plots_dir is not None:
        plots_dir.mkdir(parents=True, exist_ok=True)
    metrics.process(save_dir=plots_dir or Path("."), plot=plots_dir is not None)
    return metrics


def max_f1_point(box: Any) -> tuple[float, float]:  # noqa: ANN401 - Ultralytics' Metric
    """(confidence, F1) where the class-mean F1 curve peaks, smoothed as Ultralytics does."""
    from ultralytics.utils.metrics import smooth

    curve = np.asarray(box.f1_curve)
    if curve.size == 0 or not np.any(curve):
        return float("nan"), 0.0
    mean_f1 = smooth(curve.mean(0), 0.1)
    best = int(mean_f1.argmax())
    return float(box.px[best]), float(mean_f1[best])


def max_f1_conf(stats: list[ImageStats], names: list[str]) -> float | None:
    """The confidence threshold of maximum F1 over these images (None: nothing was detected)."""
    conf, _ = max_f1_point(_det_metrics(stats, names).box)
    return None if np.isnan(conf) else round(conf, 2)


def summarize(stats: list[ImageStats], names: list[str], conf: float,
              plots_dir: Path | None = None) -> DatasetScores:
    box = _det_metrics(stats, names, plots_dir).box
    precision, recall = _at_threshold(stats, conf, None)
    best_conf, best_f1 = max_f1_point(box)
    ap_index = list(box.ap_class_index)
    per_class = {}
    for class_id, name in enumerate(names):
        p, r = _at_threshold(stats, conf, class_id)
        scores = ClassScores(instances=int(sum((s.target_cls == class_id).sum() for s in stats)),
                             precision=round(p, 4), recall=round(r, 4))
        if class_id in ap_index:
            i = ap_index.index(class_id)
            scores.AP50 = round(float(box.ap50[i]), 4)
            scores.AP50_95 = round(float(box.ap[i]), 4)
        per_class[name] = scores
    return DatasetScores(
        images=len(stats), instances=int(sum(len(s.target_cls) for s in stats)),
        mAP50=round(float(box.map50), 4), mAP50_95=round(float(box.map), 4),
        precision=round(precision, 4), recall=round(recall, 4), conf=conf,
        max_f1=MaxF1(conf=None if np.isnan(best_conf) else round(best_conf, 3), f1=round(best_f1, 4)),
        per_class=per_class)


def confusion_matrix(stats: list[ImageStats], n_classes: int, conf: float) -> np.ndarray:
    """(pred, true) counts with a last background row/column; class-agnostic matching at IoU 0.5."""
    matrix = np.zeros((n_classes + 1, n_classes + 1), np.int64)
    bg = n_classes
    for s in stats:
        keep = s.conf >= conf
        boxes, classes = s.pred_boxes[keep], s.pred_cls[keep]
        iou = box_iou(s.target_boxes, boxes) if len(boxes) and len(s.target_boxes) else \
            np.zeros((len(s.target_boxes), len(boxes)))
        used_gt, used_pred = set(), set()
        for gi, pj in sorted(zip(*np.nonzero(iou >= 0.5)), key=lambda ij: -iou[ij]):
            if gi in used_gt or pj in used_pred:
                continue
            used_gt.add(gi)
            used_pred.add(pj)
            matrix[classes[pj], s.target_cls[gi]] += 1
        for pj in set(range(len(boxes))) - used_pred:
            matrix[classes[pj], bg] += 1
        for gi in set(range(len(s.target_boxes))) - used_gt:
            matrix[bg, s.target_cls[gi]] += 1
    return matrix


def confusion_plot(stats: list[ImageStats], names: list[str], conf: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = confusion_matrix(stats, len(names), conf)
    labels = [*names, "background"]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set_title(f"confusion at conf >= {conf}, IoU >= 0.5")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def evaluate(model_path: Path, data_yamls: list[Path], split: str = "val",
             plots_dir: Path | None = None, threads: int | None = None,
             conf: float | Literal["max-f1"] | None = None,
             input_border: int | None = None, engine: EngineRequest = "auto",
             precision: PrecisionRequest = "auto", tile: TileMode = "auto") -> EvalReport:
    """Scores per dataset. Precision and recall are taken at `conf`: the model card's default
    (None), a number, or "max-f1": the confidence of maximum F1 over the images of all datasets
    together (the report's conf_source says which was used). The boxes are found as served:
    `tile` as the API's query, `auto` by default (the report's tile)."""
    from training.offline import import_ultralytics

    import_ultralytics()  # AP comes from Ultralytics: say so before scoring, not after
    detector = Detector(model_path, threads=threads, input_border=input_border, engine=engine,
                        precision=precision)
    per_dataset = {}
    for yaml_path in data_yamls:
        dataset = YoloDataset.from_yaml(yaml_path)
        per_dataset[dataset.name] = collect(detector, dataset, split, tile)
    source: Literal["given", "card", "max-f1"] = "given"
    if conf == "max-f1":
        pooled = [s for stats in per_dataset.values() for s in stats]
        chosen = max_f1_conf(pooled, detector.class_names) if pooled else None
        conf, source = (detector.default_conf, "card") if chosen is None else (chosen, "max-f1")
    elif conf is None:
        conf, source = detector.default_conf, "card"
    datasets = {}
    for name, stats in per_dataset.items():
        ds_plots = plots_dir / name if plots_dir else None
        datasets[name] = summarize(stats, detector.class_names, conf, ds_plots)
        if ds_plots is not None:
            confusion_plot(stats, detector.class_names, conf, ds_plots / "confusion_matrix.png")
    return EvalReport(model=detector.model_ref, split=split, conf=conf,
                      conf_source=source, tile=tile, datasets=datasets)


def format_table(report: EvalReport) -> str:
    lines = [f"{'dataset':<10} {'class':<6} {'inst':>5} {'mAP50':>6} {'mAP50-95':>8} {'P':>6} {'R':>6}"]
    for name, res in report.datasets.items():
        lines.append(f"{name:<10} {'all':<6} {res.instances:>5} {res.mAP50:>6.3f} "
                     f"{res.mAP50_95:>8.3f} {res.precision:>6.3f} {res.recall:>6.3f}")
        for cls, c in res.per_class.items():
            lines.append(f"{'':<10} {cls:<6} {c.instances:>5} {c.AP50:>6.3f} "
                         f"{c.AP50_95:>8.3f} {c.precision:>6.3f} {c.recall:>6.3f}")
    return "\n".join(lines)


def write_report(report: EvalReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.model_dump(mode="json", by_alias=True), indent=2), encoding="utf-8")
