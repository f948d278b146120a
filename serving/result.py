"""The answer for one image: detections plus the summaries agronomists and sprayers need."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from serving.answer import Box, Detection, DetectAnswer, ImageSize, ModelRef, wire_dict
from serving.detections import Detections
from serving.geometry import lanes_hit, union_area
from serving.vegetation import plant_cover

# `plant`: green-on-brown mode (serving/green.py), where every plant on a fallow field is a target.
WEED_CLASS_NAMES = ("weed", "plant")

AnswerT = TypeVar("AnswerT", bound=DetectAnswer)


@dataclass
class DetectionResult:
    detections: Detections
    width: int
    height: int
    class_names: list[str]
    model: ModelRef
    timing_ms: dict[str, float] = field(default_factory=dict)
    # bool plant pixels (serving.vegetation), at full or working resolution; None when no weed
    # was found (cover is 0 then)
    vegetation: np.ndarray | None = None
    areas: np.ndarray | None = None  # plant pixels per detection (green-on-brown mode only)

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelRef):  # the card's model_info mapping
            self.model = ModelRef.model_validate(self.model)

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

    def detection_models(self) -> list[Detection]:
        """The boxes as the answer lists them (rounded: 0.1 px, confidence to 4 places); with
        their plant pixels in green-on-brown mode."""
        dets = self.detections
        rows = zip(dets.boxes.tolist(), dets.scores.tolist(), dets.class_ids.tolist())
        found = [Detection(class_id=c, class_name=self.class_names[c], confidence=round(s, 4),
                           box=Box(x1=round(b[0], 1), y1=round(b[1], 1), x2=round(b[2], 1),
                                   y2=round(b[3], 1)))
                 for b, s, c in rows]
        if self.areas is not None:
            for detection, area in zip(found, self.areas.tolist()):
                detection.area = int(round(area))
        return found

    def answer_fields(self, lanes: int | None = None) -> dict[str, Any]:
        """The answer's parts, typed, by field name (lanes only when asked)."""
        fields: dict[str, Any] = {
            "model": self.model,
            "image": ImageSize(width=self.width, height=self.height),
            "detections": self.detection_models(),
            "counts": self.counts(),
            "weed_cover": round(self.weed_cover(), 6),
            "weed_box_cover": round(self.weed_box_cover(), 6),
            "timing_ms": {k: round(v, 2) for k, v in self.timing_ms.items()},
        }
        if lanes is not None:
            fields["lanes"] = self.lanes(lanes)
        return fields

    def answer(self, lanes: int | None = None, kind: type[AnswerT] = DetectAnswer,  # type: ignore[assignment]
               **refs: Any) -> AnswerT:
        """The API v1 detect answer, built from its typed parts; `kind` an answer that extends
        it (a batch item, a batch record, a detect line) with its `refs` (index, path ...)."""
        return kind(**self.answer_fields(lanes), **refs)

    def to_dict(self, lanes: int | None = None) -> dict[str, Any]:
        """The detect answer's JSON as Python values: what the API sends."""
        return wire_dict(self.answer(lanes))
