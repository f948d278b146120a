"""Plant-area weed cover: vegetation inside weed boxes and outside crop boxes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from serving.vegetation import COVER_WORK_SIDE, VegetationOptions, box_raster, plant_cover, vegetation_mask


def test_box_raster_covers_the_box_pixels() -> None:
    inside = box_raster(np.array([[2, 1, 5, 4], [-3, -3, 1, 1]], np.float32), (6, 8))
    assert inside.sum() == 3 * 3 + 1
    assert inside[1:4, 2:5].all() and inside[0, 0] and not inside[5, 7]


def test_plant_cover_counts_only_weed_vegetation_outside_crops() -> None:
    mask = np.zeros((10, 10), bool)
    mask[0:4, 0:4] = True  # 16 plant pixels
    weed = np.array([[0, 0, 4, 4]], np.float32)
    assert plant_cover(mask, weed, np.zeros((0, 4), np.float32)) == pytest.approx(0.16)
    crop = np.array([[0, 0, 2, 4]], np.float32)  # covers half of the weed box: crop wins
    assert plant_cover(mask, weed, crop) == pytest.approx(0.08)
    soil_box = np.array([[5, 5, 10, 10]], np.float32)  # a weed box on bare soil: no cover
    assert plant_cover(mask, soil_box, np.zeros((0, 4), np.float32)) == 0.0
    assert plant_cover(mask, np.zeros((0, 4), np.float32), crop) == 0.0


def test_cover_from_the_coarse_mask_matches_full_resolution(shared_data: Path) -> None:
    """What mode=model reports (mask at long side COVER_WORK_SIDE, boxes scaled to it) against
    the same cover at full resolution, on real CWFID frames with their labelled boxes."""
    paths = sorted((shared_data / "cwfid" / "images" / "val").glob("*.png"))[:4]
    checked = 0
    for path in paths:
        image = cv2.imread(str(path))
        height, width = image.shape[:2]
        rows = np.loadtxt(path.parents[2] / "labels" / "val" / f"{path.stem}.txt", ndmin=2)
        boxes = np.column_stack([(rows[:, 1] - rows[:, 3] / 2) * width, (rows[:, 2] - rows[:, 4] / 2) * height,
                                 (rows[:, 1] + rows[:, 3] / 2) * width, (rows[:, 2] + rows[:, 4] / 2) * height])
        weeds, crops = boxes[rows[:, 0] == 1], boxes[rows[:, 0] == 0]
        assert len(weeds), path.name
        coarse = vegetation_mask(image, VegetationOptions(work_side=COVER_WORK_SIDE), full_resolution=False).mask
        assert max(coarse.shape) <= COVER_WORK_SIDE < width // 2  # a whole-factor shrink
        full = vegetation_mask(image, VegetationOptions(work_side=None)).mask
        fine = plant_cover(full, weeds, crops)
        if fine < 0.01:  # too few weed pixels for a relative comparison
            continue
        checked += 1
        assert plant_cover(coarse, weeds, crops, (height, width)) == pytest.approx(fine, rel=0.1)
        assert plant_cover(coarse, weeds, crops) != pytest.approx(fine, rel=0.1), \
            "unscaled boxes on the coarse mask must miss: the test would not see a scaling bug"
    assert checked >= 2, f"only {checked} of {len(paths)} frames have weeds enough to compare"


MODEL = {"name": "m", "version": "1", "sha256": "0" * 64}  # an answer always names its model


def test_answer_has_plant_and_box_cover() -> None:
    from serving.detections import Detections
    from serving.result import DetectionResult

    mask = np.zeros((10, 20), bool)
    mask[0:5, 0:5] = True  # 25 plant pixels, in the weed box's corner
    dets = Detections(np.array([[0, 0, 10, 10], [0, 0, 2, 10]], np.float32),
                      np.array([0.9, 0.8], np.float32), np.array([1, 0], np.int64))
    result = DetectionResult(dets, 20, 10, ["crop", "weed"], MODEL, vegetation=mask)
    answer = result.to_dict()
    assert answer["weed_box_cover"] == pytest.approx(100 / 200)
    assert answer["weed_cover"] == pytest.approx((25 - 10) / 200)  # the crop box's 10 px are crop
    no_weed = DetectionResult(dets[np.array([1])], 20, 10, ["crop", "weed"], MODEL)
    assert no_weed.to_dict()["weed_cover"] == 0.0
