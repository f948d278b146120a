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


# NMS compares candidate boxes pairwise; a request that keeps every anchor (conf=0) gives it
# thousands. The surest this many per box asked for (max_det) are enough to fill the answer.
NMS_CANDIDATES_PER_BOX = 2


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

    # Threshold on the (nc, N) rows first: only a few dozen of the thousands of anchors pass,
    # and only those are converted to boxes.
    class_scores = output[4:]
    scores = class_scores.max(0)
    keep = np.flatnonzero(scores > conf)
    if len(keep) > NMS_CANDIDATES_PER_BOX * max_det:  # NMS is quadratic: only the surest go in
        top = np.argpartition(-scores[keep], NMS_CANDIDATES_PER_BOX * max_det - 1)
        keep = np.sort(keep[top[:NMS_CANDIDATES_PER_BOX * max_det]])
    class_ids = class_scores[:, keep].argmax(0)
    if classes is not None:
        wanted = np.isin(class_ids, np.asarray(list(classes)))
        keep, class_ids = keep[wanted], class_ids[wanted]
    cx, cy, w, h = output[:4, keep]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    dets = Detections(boxes.astype(np.float32, copy=False), scores[keep].astype(np.float32),
                      class_ids.astype(np.int64))
    return classwise_nms(dets, iou, max_det)
