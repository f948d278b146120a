"""Box arithmetic on top of the detections: NMS (OpenCV), union area, sprayer lanes."""

from __future__ import annotations

import cv2
import numpy as np

from serving.detections import Detections


def classwise_nms(dets: Detections, iou: float, max_det: int) -> Detections:
    """Class-wise NMS with OpenCV's NMSBoxesBatched; best first, at most max_det boxes."""
    if len(dets) == 0:
        return dets
    if iou >= 1:  # nothing overlaps more than fully: NMS would keep every box
        return dets.sorted_by_score()[:max_det]
    xywh = dets.boxes.copy()
    xywh[:, 2:] -= xywh[:, :2]
    kept_indices = cv2.dnn.NMSBoxesBatched(
        xywh.tolist(), dets.scores.tolist(), dets.class_ids.tolist(), 0.0, float(iou)
    )
    keep = np.asarray(kept_indices, np.int64).reshape(-1)
    kept = dets[keep].sorted_by_score()
    return kept[:max_det]


def union_area(boxes: np.ndarray) -> float:
    """Exact area covered by the union of axis-aligned boxes (coordinate compression)."""
    if len(boxes) == 0:
        return 0.0
    if len(boxes) == 1:
        x1, y1, x2, y2 = boxes[0].tolist()
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)
    xs = np.unique(boxes[:, [0, 2]])
    ys = np.unique(boxes[:, [1, 3]])
    covered = np.zeros((len(ys) - 1, len(xs) - 1), bool)
    for x1, y1, x2, y2 in boxes:
        i0, i1 = np.searchsorted(xs, [x1, x2])
        j0, j1 = np.searchsorted(ys, [y1, y2])
        covered[j0:j1, i0:i1] = True
    cell_areas = np.outer(np.diff(ys), np.diff(xs))
    return float((cell_areas * covered).sum())


def lanes_hit(boxes: np.ndarray, image_width: int, lanes: int) -> list[bool]:
    """Cut the image into `lanes` equal vertical strips; a strip is hit when a box overlaps it."""
    edges = np.linspace(0.0, float(image_width), lanes + 1)
    hit = [False] * lanes
    for x1, _, x2, _ in boxes:
        for i in range(lanes):
            if x1 < edges[i + 1] and x2 > edges[i]:
                hit[i] = True
    return hit
