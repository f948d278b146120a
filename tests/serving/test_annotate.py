"""Annotated images draw boxes as the page does: readable on green leaves."""

from __future__ import annotations

import numpy as np

from serving.annotate import HALO, draw
from serving.detections import Detections
from serving.result import DetectionResult


def test_crop_boxes_are_white_on_a_dark_halo_and_weed_boxes_magenta() -> None:
    leaves = np.zeros((400, 600, 3), np.uint8)
    leaves[:] = (40, 160, 50)  # BGR leaf green
    dets = Detections(np.array([[100, 150, 250, 350], [350, 150, 500, 350]], np.float32),
                      np.array([0.9, 0.8], np.float32), np.array([0, 1], np.int64))
    result = DetectionResult(dets, 600, 400, ["crop", "weed"], {"name": "m", "version": "1", "sha256": "0" * 64})
    canvas = draw(leaves, result)
    # Down the left side of each box, away from the label chip: the line, then the halo beside it.
    assert tuple(canvas[300, 100]) == (255, 255, 255)
    assert tuple(canvas[300, 350]) == (200, 30, 230)
    assert tuple(canvas[300, 99]) == HALO and tuple(canvas[300, 101]) == HALO  # either side
    assert tuple(canvas[300, 50]) == (40, 160, 50)  # the photo is untouched away from the boxes
