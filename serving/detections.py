"""One typed set of detections, shared by the API, the CLI, batch jobs and evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """Boxes as pixel x1, y1, x2, y2 of the upright image, with score and class id per box."""

    boxes: np.ndarray  # (N, 4) float32
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int64

    def __post_init__(self) -> None:
        if not (len(self.boxes) == len(self.scores) == len(self.class_ids)):
            raise ValueError("boxes, scores and class_ids must have the same length")

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def concat(cls, parts: Sequence[Detections]) -> Detections:
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.boxes for p in parts]).astype(np.float32, copy=False),
            np.concatenate([p.scores for p in parts]).astype(np.float32, copy=False),
            np.concatenate([p.class_ids for p in parts]).astype(np.int64, copy=False),
        )

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index: np.ndarray | slice) -> Detections:
        return Detections(self.boxes[index], self.scores[index], self.class_ids[index])

    def sorted_by_score(self) -> Detections:
        return self[np.argsort(-self.scores, kind="stable")]

    def with_min_score(self, threshold: float) -> Detections:
        return self[self.scores >= threshold]

    def of_classes(self, class_ids: Sequence[int]) -> Detections:
        return self[np.isin(self.class_ids, np.asarray(list(class_ids), np.int64))]

    def shifted(self, dx: float, dy: float) -> Detections:
        offset = np.array([dx, dy, dx, dy], np.float32)
        return Detections(self.boxes + offset, self.scores, self.class_ids)
