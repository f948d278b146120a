"""Vegetation mask (serving/vegetation.py) on synthetic soil and on real field images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from serving.vegetation import VEG_INDICES, VegetationOptions, vegetation_index, vegetation_mask

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def bare_soil(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """Brown soil with texture noise and darker clods, no plant (BGR)."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), (50, 80, 120), np.int16)
    image += rng.integers(-25, 26, (height, width, 1), dtype=np.int16)  # brightness texture
    image += rng.integers(-6, 7, image.shape, dtype=np.int16)  # colour noise
    for _ in range(30):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(image, centre, int(rng.integers(4, 20)), (30, 50, 80), -1)
    return np.clip(image, 0, 255).astype(np.uint8)


def field_images(dataset: str, pattern: str) -> list[Path]:
    images = sorted((SHARED / dataset / "images" / "train").glob(pattern))[:3] + \
        sorted((SHARED / dataset / "images" / "val").glob(pattern))[:2]
    if not images:
        pytest.skip(f"{SHARED / dataset} is absent (the shared data folder is not here)")
    return images


def label_box_mask(image_path: Path, shape: tuple[int, int]) -> np.ndarray:
    label = image_path.parents[2] / "labels" / image_path.parent.name / f"{image_path.stem}.txt"
    height, width = shape
    inside = np.zeros(shape, bool)
    for line in label.read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            continue
        _, cx, cy, w, h = (float(v) for v in line.split())
        x1, x2 = round((cx - w / 2) * width), round((cx + w / 2) * width)
        y1, y2 = round((cy - h / 2) * height), round((cy + h / 2) * height)
        inside[max(0, y1):y2, max(0, x1):x2] = True
    return inside


@pytest.mark.parametrize("index", VEG_INDICES)
def test_bare_soil_gives_an_empty_mask(index: str) -> None:
    for seed in range(3):
        result = vegetation_mask(bare_soil(seed=seed), VegetationOptions(index=index))
        assert result.mask.shape == (480, 640)
        assert result.mask.sum() == 0, f"{index}: {result.mask.sum()} soil pixels taken for plants"


@pytest.mark.parametrize("index", VEG_INDICES)
def test_green_blobs_on_soil_are_found(index: str) -> None:
    image = bare_soil()
    truth = np.zeros(image.shape[:2], np.uint8)
    for centre, radius in (((100, 100), 30), ((400, 300), 50), ((550, 80), 15)):
        cv2.circle(image, centre, radius, (40, 150, 50), -1)
        cv2.circle(truth, centre, radius, 1, -1)
    truth = truth.astype(bool)
    mask = vegetation_mask(image, VegetationOptions(index=index)).mask
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.9, f"{index}: IoU {iou:.3f}"


def test_fixed_threshold_and_min_area() -> None:
    image = bare_soil()
    cv2.circle(image, (100, 100), 40, (40, 150, 50), -1)  # ~5000 px
    cv2.circle(image, (400, 300), 5, (40, 150, 50), -1)  # ~80 px
    loose = vegetation_mask(image, VegetationOptions("exg", threshold=0.2, work_side=None)).mask
    assert loose[100, 100] and loose[300, 400]
    big_only = vegetation_mask(image, VegetationOptions("exg", threshold=0.2, min_area=500)).mask
    assert big_only[100, 100] and not big_only[300, 400]
    # a threshold above every pixel's index: nothing
    assert not vegetation_mask(image, VegetationOptions("exg", threshold=1.99)).mask.any()


def test_reduced_resolution_agrees_with_full() -> None:
    image = cv2.imread(str(field_images("cwfid", "*.png")[0]))
    full = vegetation_mask(image, VegetationOptions(work_side=None)).mask
    reduced = vegetation_mask(image, VegetationOptions(work_side=512)).mask
    assert reduced.shape == full.shape == image.shape[:2]
    assert (reduced & full).sum() / (reduced | full).sum() > 0.85


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="index"):
        VegetationOptions(index="ndvi")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        VegetationOptions(threshold="high")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_area"):
        VegetationOptions(min_area=0)


def test_index_values_on_pure_colours() -> None:
    pixels = np.array([[[0, 255, 0], [0, 0, 255], [128, 128, 128]]], np.uint8)  # green, red, grey
    exg = vegetation_index(pixels, "exg")[0]
    assert exg == pytest.approx([2.0, -1.0, 0.0], abs=1e-6)
    exgr = vegetation_index(pixels, "exgr")[0]
    assert exgr == pytest.approx([3.0, -2.4, -0.4 / 3], abs=1e-5)


@pytest.mark.parametrize(("dataset", "pattern"), [("cwfid", "*.png"), ("sesame", "*.jpeg")])
@pytest.mark.parametrize("index", ["exg", "exgr"])
def test_field_mask_lies_in_the_labelled_plant_boxes(dataset: str, pattern: str, index: str) -> None:
    shares = []
    for path in field_images(dataset, pattern):
        image = cv2.imread(str(path))
        mask = vegetation_mask(image, VegetationOptions(index=index, min_area=50)).mask
        boxes = label_box_mask(path, image.shape[:2])
        assert mask.sum() > 0.002 * mask.size, f"{path.name}: almost no plant found"
        inside = (mask & boxes).sum() / mask.sum()
        # CWFID leaves some small plants unlabelled (its own masks hold more plant than its boxes)
        assert inside > 0.6, f"{path.name}: only {inside:.2f} of the mask is inside plant boxes"
        assert inside > min(boxes.mean() + 0.05, 0.99), f"{path.name}: no better than chance"
        shares.append(inside)
    assert np.mean(shares) > 0.8, f"mean share of the mask inside plant boxes {np.mean(shares):.2f}"
