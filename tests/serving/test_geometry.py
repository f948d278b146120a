import numpy as np
import pytest

from serving.detections import Detections
from serving.geometry import classwise_nms, lanes_hit, union_area
from serving.tiling import should_tile, tile_windows


def test_union_area_counts_overlap_once() -> None:
    boxes = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [100, 100, 110, 101]], np.float32)
    assert union_area(boxes) == pytest.approx(100 + 100 - 25 + 10)


def test_union_area_of_nested_and_empty() -> None:
    assert union_area(np.zeros((0, 4), np.float32)) == 0.0
    assert union_area(np.array([[0, 0, 10, 10], [2, 2, 4, 4]], np.float32)) == pytest.approx(100)
    assert union_area(np.array([[2, 3, 12.5, 7]], np.float32)) == pytest.approx(42)  # one box


def test_union_area_matches_a_raster() -> None:
    rng = np.random.default_rng(0)
    xy = rng.integers(0, 80, (30, 2))
    boxes = np.concatenate([xy, xy + rng.integers(1, 20, (30, 2))], 1).astype(np.float32)
    raster = np.zeros((100, 100), bool)
    for x1, y1, x2, y2 in boxes.astype(int):
        raster[y1:y2, x1:x2] = True
    assert union_area(boxes) == pytest.approx(raster.sum())


def test_lanes_are_left_to_right_strips() -> None:
    boxes = np.array([[10, 0, 20, 5], [74, 0, 76, 5]], np.float32)  # lane 0; lanes 2 and 3 of 4
    assert lanes_hit(boxes, 100, 4) == [True, False, True, True]
    assert lanes_hit(np.zeros((0, 4), np.float32), 100, 3) == [False, False, False]
    # touching a border without crossing it is not an overlap
    assert lanes_hit(np.array([[25, 0, 50, 1]], np.float32), 100, 4) == [False, True, False, False]


def test_nms_is_classwise_and_caps_max_det() -> None:
    dets = Detections(np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]],
                               np.float32),
                      np.array([0.9, 0.8, 0.7, 0.6], np.float32), np.array([1, 1, 0, 1]))
    kept = classwise_nms(dets, iou=0.5, max_det=10)
    assert kept.scores.tolist() == pytest.approx([0.9, 0.7, 0.6])  # overlap of another class stays
    assert len(classwise_nms(dets, iou=0.5, max_det=2)) == 2


def test_tiles_cover_the_image_and_overlap() -> None:
    windows = tile_windows(5000, 4000, 832, 0.2)
    covered = np.zeros((4000, 5000), bool)
    for x0, y0, x1, y1 in windows:
        assert x1 - x0 == 832 and y1 - y0 == 832
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    xs = sorted({w[0] for w in windows})
    assert all(b - a <= 832 * 0.8 + 1 for a, b in zip(xs, xs[1:]))
    assert tile_windows(300, 200, 832, 0.2) == [(0, 0, 300, 200)]


def test_should_tile_modes() -> None:
    assert should_tile(5000, 4000, 416, "auto", 4.0)
    assert not should_tile(1296, 966, 416, "auto", 4.0)
    assert not should_tile(1296, 966, 320, "auto", 4.0, 2048)  # a CWFID frame stays whole
    assert should_tile(4032, 3024, 320, "auto", 4.0, 2048)  # a phone photo is tiled
    assert should_tile(100, 100, 416, "on", 4.0)
    assert not should_tile(9000, 9000, 416, "off", 4.0)
