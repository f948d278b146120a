"""Turn raw ONNX outputs into Detections, for both YOLO output layouts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from serving.detections import Detections
from serving.geometry import classwise_nms

RAW = "raw"  # (B, 4 + nc, N): cx, cy, w, h + class scores; needs NMS
END_TO_END = "end2end"  # (B, K, 6): x1, y1, x2, y2, score, class; NMS-free (YOLO26, YOLOv10)


def infer_layout(output_shape: Sequence[int | str | None], num_classes: int) -> str:
    """Tell the layouts apart from the output shape (used when the card does not say)."""
    if len(output_shape) == 3 and output_shape[2] == 6 and output_shape[1] != 4 + num_classes:
        return END_TO_END
    return RAW


def decode_output(
    output: np.ndarray,
    layout: str,
    conf: float,
    iou: float,
    max_det: int,
    classes: Sequence[int] | None = None,
) -> Detections:
    """One image's output (no batch axis) -> Detections in model-input pixels."""
    if layout == END_TO_END:
        dets = Detections(output[:, :4].astype(np.float32), output[:, 4].astype(np.float32),
                          output[:, 5].astype(np.int64))
        dets = dets.with_min_score(conf) if conf > 0 else dets[dets.scores > 0]
        if classes is not None:
            dets = dets.of_classes(classes)
        return dets.sorted_by_score()[:max_det]

    preds = output.T  # (N, 4 + nc)
    class_scores = preds[:, 4:]
    class_ids = class_scores.argmax(1)
    scores = class_scores[np.arange(len(preds)), class_ids]
    keep = scores > conf
    if classes is not None:
        keep &= np.isin(class_ids, np.asarray(list(classes)))
    xywh = preds[keep, :4]
    boxes = np.empty_like(xywh)
    boxes[:, :2] = xywh[:, :2] - xywh[:, 2:] / 2
    boxes[:, 2:] = xywh[:, :2] + xywh[:, 2:] / 2
    dets = Detections(boxes.astype(np.float32), scores[keep].astype(np.float32),
                      class_ids[keep].astype(np.int64))
    return classwise_nms(dets, iou, max_det)
