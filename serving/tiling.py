"""Cutting big images (drone and phone photos) into overlapping tiles and putting the tiles'
detections back together; kept apart from the model, as SAHI's and supervision's slicers are.

A plant cut by a tile seam is seen by each tile as a part box ending at the seam. Class-wise NMS
keeps both parts (their IoU is small), so the slicer first merges, across windows, each box that
ends at an inner tile edge with the one box of the same class in each other tile that agrees with
it where the two tiles overlap (IoU of the two boxes clipped to the shared strip), into their
union (greedy NMM, best score first). Only boxes cut by a seam merge: two whole plants side by
side stay two. Then NMS settles the rest (the same plant seen whole by two overlapping tiles, or
by the whole-frame pass).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from serving.detections import Detections
from serving.geometry import classwise_nms

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels


def _start_count(length: int, tile: int, overlap: float) -> int:
    """How many windows of side `tile` cover `length` pixels (tile_windows, along one axis)."""
    if length <= tile:
        return 1
    return math.ceil((length - tile) / (tile * (1.0 - overlap))) + 1


def tile_windows(width: int, height: int, tile: int, overlap: float) -> list[Window]:
    """Overlapping windows (x0, y0, x1, y1) of side `tile` covering the whole image.

    Windows are spread evenly so that the last one ends exactly at the border.
    """
    def starts(length: int) -> list[int]:
        if length <= tile:
            return [0]
        count = _start_count(length, tile, overlap)
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


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def _paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of a[k] with b[k] for each row k (a single box in a is broadcast)."""
    width = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    height = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)
    union = _area(a) + _area(b) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def _clip(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    return np.concatenate([np.maximum(boxes[:, :2], regions[:, :2]),
                           np.minimum(boxes[:, 2:], regions[:, 2:])], axis=1)


def agreement_in_overlap(box: np.ndarray, window: np.ndarray, others: np.ndarray,
                         other_windows: np.ndarray) -> np.ndarray:
    """IoU of one box with each of others, both clipped to where their two windows overlap: the
    part both tiles saw. Two views of one plant agree there, however large the plant."""
    shared = np.concatenate([np.maximum(window[:2], other_windows[:, :2]),
                             np.minimum(window[2:], other_windows[:, 2:])], axis=1)
    return _paired_iou(_clip(np.broadcast_to(box, others.shape), shared), _clip(others, shared))


@dataclass(frozen=True)
class TileSlicer:
    """Windows for one image (the whole frame first, then the tiles) and the merge of their boxes."""

    tile: int  # tile side in image pixels
    overlap: float = 0.2
    match_overlap: float = 0.5  # a seam-cut box merges with a box agreeing this much in the overlap
    # Only confident boxes merge, and a view joins only if it is about as sure as the box: faint
    # boxes round a plant (plenty at a low request conf) would widen its union.
    min_score: float = 0.25
    partner_score: float = 0.5
    seam_margin: float = 0.01  # a box within this share of the tile side of an inner edge is cut
    cross_iou: float = 0.5  # a whole-frame box and a tile box this alike are one plant
    # The merge compares boxes pairwise: it takes only the surest max_det x this many boxes of
    # all windows (a plant is seen by at most four tiles and the whole frame), so that its cost
    # stays bounded whatever conf, iou and max_det a request asks for.
    candidates_per_box: int = 5

    def windows(self, width: int, height: int, whole_frame: bool = True) -> list[Window]:
        tiles = [w for w in tile_windows(width, height, self.tile, self.overlap) if w != (0, 0, width, height)]
        return ([(0, 0, width, height)] if whole_frame or not tiles else []) + tiles

    def count(self, width: int, height: int) -> int:
        """len(self.windows(width, height)), from the size alone (no list of windows)."""
        if width <= self.tile and height <= self.tile:
            return 1
        return 1 + _start_count(width, self.tile, self.overlap) * _start_count(height, self.tile, self.overlap)

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
        frames = np.asarray(windows, np.float32)
        cut = np.concatenate([self.cut_by_seam(p.boxes, w, width, height) for p, w in zip(parts, windows)])
        # The whole-frame pass takes part in NMS only: one of its coarse boxes round a clump would
        # otherwise swallow the tiles' boxes of the single plants in it.
        in_tile = np.concatenate([np.full(len(p), w != (0, 0, width, height)) for p, w in zip(parts, windows)])
        limit = self.candidates_per_box * max_det
        if len(merged) > limit:  # the surest only, in their original order
            keep = np.sort(np.argpartition(-merged.scores, limit - 1)[:limit])
            merged = Detections(merged.boxes[keep], merged.scores[keep], merged.class_ids[keep])
            window_of, cut, in_tile = window_of[keep], cut[keep], in_tile[keep]
        boxes, scores = merged.boxes.copy(), merged.scores
        alive = np.ones(len(merged), bool)
        for i in np.argsort(-scores, kind="stable"):
            if not (alive[i] and in_tile[i] and scores[i] >= self.min_score):
                continue
            partners = np.flatnonzero(alive & in_tile & (merged.class_ids == merged.class_ids[i])
                                      & (window_of != window_of[i]) & (cut[i] | cut)
                                      & (scores >= max(self.partner_score * scores[i], self.min_score)))
            if not len(partners):
                continue
            agree = agreement_in_overlap(boxes[i], frames[window_of[i]], boxes[partners],
                                         frames[window_of[partners]])
            joins = []
            for window in np.unique(window_of[partners]):  # the best-agreeing view in each tile
                mask = (window_of[partners] == window) & (agree >= self.match_overlap)
                if mask.any():
                    joins.append(partners[mask][np.argmax(agree[mask])])
            if joins:
                group = np.append(joins, i)
                boxes[i] = [*boxes[group, :2].min(0), *boxes[group, 2:].max(0)]
                cut[i] = cut[group].all()  # still cut only if every part was
                alive[joins] = False
        # The whole frame and the tiles see one plant at two scales, so their two boxes of it agree
        # less than two tiles' do: between the passes a lower IoU (cross_iou) marks a duplicate.
        for i in np.argsort(-scores, kind="stable"):
            if not alive[i]:
                continue
            others = np.flatnonzero(alive & (in_tile != in_tile[i])
                                    & (merged.class_ids == merged.class_ids[i]) & (scores <= scores[i]))
            others = others[others != i]
            if len(others):
                overlap = _paired_iou(np.broadcast_to(boxes[i], (len(others), 4)), boxes[others])
                alive[others[overlap >= self.cross_iou]] = False
        kept = np.flatnonzero(alive)
        return classwise_nms(Detections(boxes[kept], scores[kept], merged.class_ids[kept]), iou, max_det)
