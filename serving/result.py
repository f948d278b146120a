"""The answer for one image: detections plus the summaries agronomists and sprayers need."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from serving.answer import Box, DetectAnswer, Detection, ImageSize, ModelRef, VegetationMaskRuns, wire_dict
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

    def needs_vegetation(self) -> bool:
        """Whether the weed cover needs the plant mask: only when a weed was found."""
        return bool(self._is_weed().any())

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
        is_weed = self._is_weed()
        if not is_weed.any():
            return 0.0
        if self.vegetation is None:
            raise ValueError("weed cover needs the vegetation mask of the image")
        # from the boxes as sent, so that a client measures the same cover from the sent mask
        boxes = self._wire_boxes()
        return plant_cover(self.vegetation, boxes[is_weed], boxes[~is_weed], (self.height, self.width))

    def weed_box_cover(self) -> float:
        """Box area: the share of the image under the union of weed boxes (as sent, as for the
        plant area, so that a client filtering the boxes measures the same)."""
        area = float(self.width * self.height)
        return union_area(self._wire_boxes()[self._is_weed()]) / area if area else 0.0

    def lanes(self, count: int) -> list[bool]:
        return lanes_hit(self._weed_boxes(), self.width, count)

    def _wire_boxes(self) -> np.ndarray:
        """(N, 4) float64: the boxes as the answer sends them, rounded to 0.1 px."""
        rounded = [[round(v, 1) for v in box] for box in self.detections.boxes.tolist()]
        return np.array(rounded, np.float64).reshape(-1, 4)

    def detection_models(self) -> list[Detection]:
        """The boxes as the answer lists them (rounded: 0.1 px, confidence to 4 places); with
        their plant pixels in green-on-brown mode."""
        dets = self.detections
        rows = zip(self._wire_boxes().tolist(), dets.scores.tolist(), dets.class_ids.tolist())
        found = [Detection(class_id=c, class_name=self.class_names[c], confidence=round(s, 4),
                           box=Box(x1=b[0], y1=b[1], x2=b[2], y2=b[3]))
                 for b, s, c in rows]
        if self.areas is not None:
            for detection, area in zip(found, self.areas.tolist()):
                detection.area = round(area)
        return found

    def answer_fields(self, lanes: int | None = None, vegetation_mask: bool = False) -> dict[str, Any]:
        """The answer's parts, typed, by field name (lanes and the plant mask only when asked;
        the mask needs a detection run with DetectOptions(cover="always"))."""
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
        if vegetation_mask:
            if self.vegetation is None:
                raise ValueError("no plant mask: detect with DetectOptions(cover='always')")
            fields["vegetation_mask"] = VegetationMaskRuns.of(self.vegetation)
        return fields

    def answer(self, lanes: int | None = None, kind: type[AnswerT] = DetectAnswer,  # type: ignore[assignment]
               vegetation_mask: bool = False, **refs: Any) -> AnswerT:
        """The API v1 detect answer, built from its typed parts; `kind` an answer that extends
        it (a batch item, a batch record, a detect line) with its `refs` (index, path, frame
        tags ...)."""
        return kind(**self.answer_fields(lanes, vegetation_mask), **refs)

    def to_dict(self, lanes: int | None = None, vegetation_mask: bool = False) -> dict[str, Any]:
        """The detect answer's JSON as Python values: what the API sends."""
        return wire_dict(self.answer(lanes, vegetation_mask=vegetation_mask))
