"""Green-on-brown mode: no model; every vegetation region is a `plant` detection (fallow fields,
where any plant is to be sprayed). Answers have the model mode's shape: counts, cover, lanes."""

from __future__ import annotations

import hashlib
import time

import numpy as np

from serving.answer import ModelRef
from serving.detections import Detections
from serving.detector import DetectOptions
from serving.result import DetectionResult
from serving.vegetation import VegetationOptions, plant_regions

GREEN_CLASSES = ["plant"]
GREEN_MODEL_NAME = "green-on-brown"  # the model name of mode=green answers


def green_model_info(options: VegetationOptions) -> dict[str, str]:
    """Stands in for the model card in answers; the sha256 names the settings, so batch results
    of other settings are not mixed in."""
    threshold = options.threshold if options.threshold == "auto" else f"{float(options.threshold):g}"
    version = f"{options.index}/{threshold}/{options.min_area}"
    digest = hashlib.sha256(f"green-on-brown {version}".encode()).hexdigest()
    return {"name": GREEN_MODEL_NAME, "version": version, "sha256": digest}


def green_detect(image: np.ndarray, options: VegetationOptions | None = None,
                 max_det: int = 1000) -> DetectionResult:
    options = options or VegetationOptions(min_area=50)
    start = time.perf_counter()
    regions = plant_regions(image, options)
    order = np.argsort(-regions.areas, kind="stable")[:max_det]  # biggest plants first
    dets = Detections(regions.boxes[order], regions.scores[order],
                      np.zeros(len(order), np.int64))
    height, width = image.shape[:2]
    result = DetectionResult(dets, width, height, GREEN_CLASSES, ModelRef.model_validate(green_model_info(options)),
                             vegetation=regions.mask, areas=regions.areas[order])
    result.timing_ms = {"inference": (time.perf_counter() - start) * 1000}
    return result


class GreenDetector:
    """Stands in for the model's Detector in mode=green: the same `detect(image, options)`."""

    def __init__(self, options: VegetationOptions) -> None:
        self.options = options

    def detect(self, image: np.ndarray, options: DetectOptions) -> DetectionResult:
        return green_detect(image, self.options, options.max_det)
