"""Cutting big images (drone and phone photos) into overlapping tiles and putting the tiles'
detections back together; kept apart from the model, as SAHI's and supervision's slicers are.

A plant cut by a tile seam is seen by each tile as a part box ending at the seam. Class-wise NMS
keeps both parts (their IoU is small), so the slicer first merges, across windows, each box that
ends at an inner tile edge with the boxes of the same class from other tiles that it mostly lies in
or over: overlap measured by intersection over the smaller box (IoS), merged into their union
(greedy NMM). Only boxes cut by a seam merge: two whole plants side by side stay two. Then NMS
settles the rest (the same plant seen whole by two overlapping tiles, or by the whole-frame pass).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from serving.detections import Detections
from serving.geometry import classwise_nms

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels


def tile_windows(width: int, height: int, tile: int, overlap: float) -> list[Window]:
    """Overlapping windows (x0, y0, x1, y1) of side `tile` covering the whole image.

    Windows are spread evenly so that the last one ends exactly at the border.
    """
    def starts(length: int) -> list[int]:
        if length <= tile:
            return [0]
        stride = tile * (1.0 - overlap)
        count = math.ceil((length - tile) / stride) + 1
        step = (length - tile) / (count - 1)
        return [round(i * step) for i in range(count)]

    return [(x, y, min(x + tile, width), min(y + tile, height))
            for y in starts(height) for x in starts(width)]


def should_tile(width: int, height: int, input_size: int, mode: str, factor: float,
                min_side: int = 0) -> bool:
    """`auto` tiles when the longer side is over `factor` x the model input and over `min_side`."""
    if mode == "on":
        return True
    if mode == "off":
        return False
    longer = max(width, height)
    return longer > factor * input_size and longer > min_side


def intersection_over_smaller(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoS of one xyxy box with each of others: intersection / area of the smaller of the two."""
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(np.minimum(area, areas), 1e-9)


@dataclass(frozen=True)
class TileSlicer:
    """Windows for one image (the whole frame first, then the tiles) and the merge of their boxes."""

    tile: int  # tile side in image pixels
    overlap: float = 0.2
    match_ios: float = 0.5  # a seam-cut box merges with a box it overlaps by this much (IoS)
    seam_margin: float = 0.01  # a box within this share of the tile side of an inner edge is cut

    def windows(self, width: int, height: int, whole_frame: bool = True) -> list[Window]:
        tiles = [w for w in tile_windows(width, height, self.tile, self.overlap) if w != (0, 0, width, height)]
        return ([(0, 0, width, height)] if whole_frame or not tiles else []) + tiles

    def cut_by_seam(self, boxes: np.ndarray, window: Window, width: int, height: int) -> np.ndarray:
        """Which boxes (image pixels) of this window end at one of its inner edges."""
        x0, y0, x1, y1 = window
        margin = max(2.0, self.seam_margin * self.tile)
        cut = np.zeros(len(boxes), bool)
        if x0 > 0:
            cut |= boxes[:, 0] <= x0 + margin
        if y0 > 0:
            cut |= boxes[:, 1] <= y0 + margin
        if x1 < width:
            cut |= boxes[:, 2] >= x1 - margin
        if y1 < height:
            cut |= boxes[:, 3] >= y1 - margin
        return cut

    def merge(self, parts: Sequence[Detections], windows: Sequence[Window], width: int, height: int,
              iou: float, max_det: int) -> Detections:
        """One set of detections from each window's (already NMS-ed, in image pixels)."""
        if len(parts) == 1:
            return parts[0][:max_det]
        merged = Detections.concat(parts)
        window_of = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)]).astype(np.int64)
        cut = np.concatenate([self.cut_by_seam(p.boxes, w, width, height) for p, w in zip(parts, windows)])
        # The whole-frame pass takes part in NMS only: one of its coarse boxes round a clump would
        # otherwise swallow the tiles' boxes of the single plants in it.
        in_tile = np.concatenate([np.full(len(p), w != (0, 0, width, height)) for p, w in zip(parts, windows)])
        boxes, scores = merged.boxes.copy(), merged.scores
        alive = np.ones(len(merged), bool)
        for i in np.argsort(-scores, kind="stable"):
            if not (alive[i] and in_tile[i]):
                continue
            partners = np.flatnonzero(alive & in_tile & (merged.class_ids == merged.class_ids[i])
                                      & (window_of != window_of[i]))
            if not len(partners):
                continue
            ios = intersection_over_smaller(boxes[i], boxes[partners])
            joins = partners[(ios >= self.match_ios) & (cut[i] | cut[partners])]
            if len(joins):
                group = np.append(joins, i)
                boxes[i] = [*boxes[group, :2].min(0), *boxes[group, 2:].max(0)]
                cut[i] = cut[i] & cut[joins].all()  # still cut only if every part was
                alive[joins] = False
        kept = np.flatnonzero(alive)
        return classwise_nms(Detections(boxes[kept], scores[kept], merged.class_ids[kept]), iou, max_det)
