"""Tiled detection: a plant cut by a tile seam comes back as one box, two plants stay two."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from serving.detections import Detections
from serving.tiling import TileSlicer

WIDTH, HEIGHT = 1152, 640
SLICER = TileSlicer(tile=640, overlap=0.2)  # tiles (0, 0, 640, 640) and (512, 0, 1152, 640)
WHOLE, LEFT, RIGHT = (0, 0, WIDTH, HEIGHT), (0, 0, 640, 640), (512, 0, 1152, 640)


def dets(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    if not rows:
        return Detections.empty()
    array = np.array(rows, np.float32)
    return Detections(array[:, :4], array[:, 4], array[:, 5].astype(np.int64))


def merged(whole: Detections, left: Detections, right: Detections) -> Detections:
    assert SLICER.windows(WIDTH, HEIGHT) == [WHOLE, LEFT, RIGHT]
    return SLICER.merge([whole, left, right], [WHOLE, LEFT, RIGHT], WIDTH, HEIGHT, iou=0.7, max_det=300)


def test_a_weed_across_a_seam_is_one_box() -> None:
    # A weed from x=450 to x=800: the left tile sees it up to its edge at 640, the right tile
    # from its edge at 512; the whole-frame pass missed it.
    result = merged(dets(), dets((450, 100, 640, 300, 0.8, 1)), dets((512, 110, 800, 290, 0.7, 1)))
    assert len(result) == 1
    np.testing.assert_allclose(result.boxes[0], [450, 100, 800, 300])
    assert result.scores[0] == pytest.approx(0.8) and result.class_ids[0] == 1


def test_two_whole_plants_side_by_side_stay_two() -> None:
    # Both plants lie in the overlap, away from the seams: nothing is cut, nothing merges.
    left = dets((530, 100, 560, 140, 0.9, 1), (558, 100, 590, 140, 0.8, 1))
    right = dets((530, 100, 560, 140, 0.85, 1), (558, 100, 590, 140, 0.75, 1))
    result = merged(dets(), left, right)
    assert len(result) == 2  # each plant's two views are one box by NMS; the pair stays apart


def test_classes_do_not_merge_and_the_whole_frame_box_does_not_swallow_tiles() -> None:
    crop_part = dets((450, 100, 640, 300, 0.8, 0))
    weed_part = dets((512, 110, 800, 290, 0.7, 1))
    assert len(merged(dets(), crop_part, weed_part)) == 2
    clump = dets((100, 50, 1100, 600, 0.5, 1))  # a coarse whole-frame box round many plants
    plants = dets((450, 100, 640, 300, 0.8, 1))
    result = merged(clump, plants, dets((700, 400, 760, 460, 0.9, 1)))
    assert len(result) == 3


@pytest.mark.shared_data
def test_real_weeds_across_a_seam_come_back_as_one_box(shared_data: Path, shipped_model: Path) -> None:
    """The largest sesame val weeds, enlarged to ~460 px and centred on the first tile's right
    edge: cut in both tiles (wider than the overlap). Merging by NMS alone gave 4-7 boxes each."""
    from serving.detector import DetectOptions, Detector
    from training.evaluate import box_iou, read_labels

    detector = Detector(shipped_model)
    val = shared_data / "sesame" / "images" / "val"
    weeds = []
    for path in sorted(val.iterdir()):
        image = cv2.imread(str(path))
        classes, boxes = read_labels(shared_data / "sesame" / "labels" / "val" / f"{path.stem}.txt",
                                     image.shape[1], image.shape[0])
        weeds += [((b[2] - b[0]) * (b[3] - b[1]), path, b) for c, b in zip(classes, boxes) if c == 1]
    seam = round(detector.input_size * detector.tiling.tile_scale)  # the first tile's right edge
    one_box = 0
    for _, path, box in sorted(weeds, key=lambda t: -t[0])[:8]:
        image = cv2.imread(str(path))
        scale = 460 / (box[2] - box[0])
        big = cv2.resize(image, None, fx=scale, fy=scale)
        canvas = np.empty((max(1200, big.shape[0] + 100), max(1800, big.shape[1] + 700), 3), np.uint8)
        canvas[:] = np.median(big.reshape(-1, 3), 0)
        x0 = max(int(seam - (box[0] + box[2]) * scale / 2), 0)
        canvas[50:50 + big.shape[0], x0:x0 + big.shape[1]] = big
        target = box * scale + [x0, 50, x0, 50]
        found = detector.detect(canvas, DetectOptions(tile="on")).detections
        overlaps = box_iou(target[None], found.boxes[found.class_ids == 1])[0]
        assert (overlaps > 0.3).sum() <= 1, (path.name, overlaps.round(2))  # never a weed in pieces
        one_box += int((overlaps >= 0.5).sum() == 1)
    assert one_box >= 4, "most of the enlarged weeds should be found, each as one box"


def test_the_whole_frame_and_a_tile_seeing_one_plant_give_one_box() -> None:
    # Two scales of one plant: IoU ~0.6, under NMS's 0.7, yet one plant; the surer box stays.
    whole = dets((100, 100, 220, 220, 0.6, 1))
    tile = dets((110, 110, 240, 235, 0.8, 1))
    result = merged(whole, tile, dets())
    assert len(result) == 1 and result.scores[0] == pytest.approx(0.8)
