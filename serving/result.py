"""The answer for one image: detections plus the summaries agronomists and sprayers need."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.answer import DetectAnswer, wire_dict
from serving.detections import Detections
from serving.geometry import lanes_hit, union_area
from serving.vegetation import plant_cover

# `plant`: green-on-brown mode (serving/green.py), where every plant on a fallow field is a target.
WEED_CLASS_NAMES = ("weed", "plant")


@dataclass
class DetectionResult:
    detections: Detections
    width: int
    height: int
    class_names: list[str]
    model: dict[str, str]
    timing_ms: dict[str, float] = field(default_factory=dict)
    # bool plant pixels (serving.vegetation), at full or working resolution; None when no weed
    # was found (cover is 0 then)
    vegetation: np.ndarray | None = None
    areas: np.ndarray | None = None  # plant pixels per detection (green-on-brown mode only)

    @property
    def weed_class_ids(self) -> list[int]:
        return [i for i, name in enumerate(self.class_names) if name in WEED_CLASS_NAMES]

    def _weed_boxes(self) -> np.ndarray:
        return self.detections.boxes[self._is_weed()]

    def _other_boxes(self) -> np.ndarray:
        return self.detections.boxes[~self._is_weed()]

    def _is_weed(self) -> np.ndarray:
        """Per detection: is its class a weed class."""
        is_weed = np.zeros(len(self.class_names), bool)
        is_weed[self.weed_class_ids] = True
        return is_weed[self.detections.class_ids]

    def counts(self) -> dict[str, int]:
        per_class = np.bincount(self.detections.class_ids, minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, per_class)}

    def weed_cover(self) -> float:
        """Plant area: the share of the image's pixels that are vegetation inside a weed box and
        in no crop (non-weed) box."""
        weeds = self._weed_boxes()
        if len(weeds) == 0:
            return 0.0
        if self.vegetation is None:
            raise ValueError("weed cover needs the vegetation mask of the image")
        return plant_cover(self.vegetation, weeds, self._other_boxes(), (self.height, self.width))

    def weed_box_cover(self) -> float:
        """Box area: the share of the image under the union of weed boxes."""
        area = float(self.width * self.height)
        return union_area(self._weed_boxes()) / area if area else 0.0

    def lanes(self, count: int) -> list[bool]:
        return lanes_hit(self._weed_boxes(), self.width, count)

    def detection_dicts(self) -> list[dict[str, Any]]:
        if self.areas is not None:
            return [{**d, "area": int(round(float(a)))}
                    for d, a in zip(self._plain_dicts(), self.areas)]
        return self._plain_dicts()

    def _plain_dicts(self) -> list[dict[str, Any]]:
        dets = self.detections
        return [
            {"class_id": int(c), "class_name": self.class_names[int(c)],
             "confidence": round(float(s), 4),
             "box": {"x1": round(float(b[0]), 1), "y1": round(float(b[1]), 1),
                     "x2": round(float(b[2]), 1), "y2": round(float(b[3]), 1)}}
            for b, s, c in zip(dets.boxes, dets.scores, dets.class_ids)
        ]

    def answer_fields(self, lanes: int | None = None) -> dict[str, Any]:
        """The answer's fields as plain values (lanes only when asked), for `DetectAnswer`."""
        fields: dict[str, Any] = {
            "model": self.model,
            "image": {"width": self.width, "height": self.height},
            "detections": self.detection_dicts(),
            "counts": self.counts(),
            "weed_cover": round(self.weed_cover(), 6),
            "weed_box_cover": round(self.weed_box_cover(), 6),
        }
        if lanes is not None:
            fields["lanes"] = self.lanes(lanes)
        fields["timing_ms"] = {k: round(v, 2) for k, v in self.timing_ms.items()}
        return fields

    def answer(self, lanes: int | None = None) -> DetectAnswer:
        """The API v1 detect answer, validated (see serving/answer.py for its cost)."""
        return DetectAnswer.model_validate(self.answer_fields(lanes))

    def to_dict(self, lanes: int | None = None) -> dict[str, Any]:
        """The detect answer's JSON as Python values: what the API sends."""
        return wire_dict(self.answer(lanes))
