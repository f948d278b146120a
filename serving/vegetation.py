"""Plant / soil per pixel from an RGB vegetation index (green-on-brown), NumPy and OpenCV only.

Indices as OpenWeedLocator documents them, on chromatic coordinates r, g, b = R, G, B / (R+G+B):

- `exg`:  ExG  = 2g - r - b                 (Woebbecke et al.)
- `exgr`: ExGR = ExG - (1.4r - g)           (Meyer & Neto)
- `hsv`:  hue inside a green range with enough saturation and brightness (OpenCV HSV, hue 0-179);
          the index is the closeness to the range's centre, 1 there, 0 at its edges, < 0 outside.

Threshold: a fixed number (index units) or `"auto"`: Otsu on the index scaled to uint8 over its
value range, but never below the index's fixed floor, so that a bare-soil image (where Otsu
would still split the soil's noise in two) gives an empty mask. The index is computed at reduced
resolution (long side `work_side`, INTER_AREA) and the mask is upsampled back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

VegIndex = Literal["exg", "exgr", "hsv"]
VEG_INDICES: tuple[str, ...] = ("exg", "exgr", "hsv")

# Value range of each index (for the uint8 scaling Otsu needs) and the floor of the auto threshold.
INDEX_RANGE = {"exg": (-1.0, 2.0), "exgr": (-2.4, 3.0), "hsv": (-1.0, 1.0)}
AUTO_FLOOR = {"exg": 0.05, "exgr": 0.0, "hsv": 0.0}
# OpenWeedLocator's defaults (hue 39-83, saturation 50-220, brightness 60-190), OpenCV scales.
HSV_HUE = (39, 83)
HSV_SAT = (50, 220)
HSV_VAL = (60, 190)


# Weed cover is an area share: a coarse mask keeps it nearly as well as one at long side 512, for
# a quarter of the pixels and a fraction of the time of a full-size mask (benchmarks/RESULTS.md,
# vegetation). Green-on-brown regions keep 512: they need the detail.
COVER_WORK_SIDE = 256


@dataclass(frozen=True)
class VegetationOptions:
    index: VegIndex = "exg"
    threshold: float | Literal["auto"] = "auto"
    min_area: int = 1  # pixels of the full image; smaller regions are dropped
    work_side: int | None = 512  # compute at this long side; None: full resolution

    def __post_init__(self) -> None:
        if self.index not in VEG_INDICES:
            raise ValueError(f"index must be one of {', '.join(VEG_INDICES)}, not {self.index!r}")
        if self.threshold != "auto" and not isinstance(self.threshold, (int, float)):
            raise ValueError(f"threshold must be 'auto' or a number, not {self.threshold!r}")
        if int(self.min_area) < 1:
            raise ValueError("min_area must be >= 1")
        if self.work_side is not None and self.work_side < 16:
            raise ValueError("work_side must be >= 16")


@dataclass(frozen=True)
class VegetationMask:
    mask: np.ndarray  # (H, W) bool, full resolution
    index: np.ndarray  # (h, w) float32 at working resolution
    threshold: float  # the threshold used, index units
    scale: float  # working / full resolution


def vegetation_index(image_bgr: np.ndarray, index: VegIndex = "exg") -> np.ndarray:
    """The per-pixel index (float32) of a BGR uint8 image."""
    if index == "hsv":
        hsv = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2HSV)
        hue, sat, val = (hsv[..., i].astype(np.float32) for i in range(3))
        centre, half = (HSV_HUE[0] + HSV_HUE[1]) / 2, (HSV_HUE[1] - HSV_HUE[0]) / 2
        closeness = 1.0 - np.abs(hue - centre) / half
        ok = (sat >= HSV_SAT[0]) & (sat <= HSV_SAT[1]) & (val >= HSV_VAL[0]) & (val <= HSV_VAL[1])
        return np.where(ok, closeness, np.minimum(closeness, -0.01)).clip(-1, 1).astype(np.float32)
    pixels = image_bgr.astype(np.float32)
    b, g, r = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    total = b + g + r
    total[total == 0] = 1.0
    b, g, r = b / total, g / total, r / total
    exg = 2 * g - r - b
    if index == "exg":
        return exg
    if index == "exgr":
        return exg - (1.4 * r - g)
    raise ValueError(f"unknown vegetation index {index!r}")


def auto_threshold(values: np.ndarray, index: VegIndex) -> float:
    """Otsu on the index scaled to uint8 over the index's range, floored at AUTO_FLOOR."""
    lo, hi = INDEX_RANGE[index]
    scaled = np.clip((values - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    level, _ = cv2.threshold(scaled.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # THRESH_BINARY keeps pixels > level: back to index units at the top of that bin.
    otsu = lo + (level + 1) * (hi - lo) / 255.0
    return max(float(otsu), AUTO_FLOOR[index])


def _working(image_bgr: np.ndarray, work_side: int | None) -> tuple[np.ndarray, float]:
    """The image shrunk by a whole factor so its long side is at most work_side: OpenCV's
    area filter has a fast path for whole factors (benchmarks/RESULTS.md, figures moved from comments)."""
    height, width = image_bgr.shape[:2]
    if work_side is None or max(height, width) <= work_side:
        return image_bgr, 1.0
    factor = math.ceil(max(height, width) / work_side)
    factor = min(factor, min(height, width))  # a sliver keeps at least one row or column
    if factor <= 1:
        return image_bgr, 1.0
    small = cv2.resize(image_bgr, None, fx=1.0 / factor, fy=1.0 / factor, interpolation=cv2.INTER_AREA)
    return small, small.shape[1] / width


def _drop_small(mask: np.ndarray, min_area: float) -> np.ndarray:
    if min_area <= 1:
        return mask
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False
    return keep[labels]


def vegetation_mask(image_bgr: np.ndarray, options: VegetationOptions | None = None,
                    full_resolution: bool = True) -> VegetationMask:
    """Plant pixels of a BGR image, at the image's full resolution (or, with
    full_resolution=False, at the working resolution: enough for area shares, and cheaper)."""
    options = options or VegetationOptions()
    small, scale = _working(image_bgr, options.work_side)
    values = vegetation_index(small, options.index)
    threshold = (auto_threshold(values, options.index) if options.threshold == "auto"
                 else float(options.threshold))
    mask = _drop_small(values > threshold, options.min_area * scale * scale)
    height, width = image_bgr.shape[:2]
    if scale != 1.0 and full_resolution:
        up = cv2.resize(mask.astype(np.uint8) * 255, (width, height), interpolation=cv2.INTER_LINEAR)
        mask = up > 127
    return VegetationMask(mask, values, threshold, scale)


def _cell(value: float) -> int:
    """A box edge (mask pixels) to a cell boundary: floor(v + 0.5), which a browser computes
    bit for bit as Math.floor(v + 0.5) (the page measures cover from the sent mask likewise)."""
    return math.floor(value + 0.5)


def box_raster(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the pixels under any of the x1, y1, x2, y2 pixel boxes."""
    height, width = shape
    inside = np.zeros(shape, bool)
    for x1, y1, x2, y2 in np.asarray(boxes, np.float64).reshape(-1, 4):
        c0, c1 = max(0, _cell(x1)), min(width, _cell(x2))
        r0, r1 = max(0, _cell(y1)), min(height, _cell(y2))
        inside[r0:r1, c0:c1] = True
    return inside


def plant_cover(mask: np.ndarray, weed_boxes: np.ndarray, crop_boxes: np.ndarray,
                image_shape: tuple[int, int] | None = None) -> float:
    """Fraction of the image's pixels that are vegetation inside a weed box and in no crop box
    (a pixel under both a crop and a weed box counts as crop). Boxes are in pixels of an image
    of image_shape (H, W); a smaller mask (working resolution) gets them scaled down."""
    if mask.size == 0 or len(weed_boxes) == 0:
        return 0.0
    if image_shape is not None and tuple(image_shape) != mask.shape:
        factor = np.array([mask.shape[1] / image_shape[1], mask.shape[0] / image_shape[0]] * 2)
        weed_boxes = np.asarray(weed_boxes, np.float64).reshape(-1, 4) * factor
        crop_boxes = np.asarray(crop_boxes, np.float64).reshape(-1, 4) * factor
    weed = box_raster(weed_boxes, mask.shape) & mask
    if len(crop_boxes):
        weed &= ~box_raster(crop_boxes, mask.shape)
    return float(weed.sum()) / mask.size


@dataclass(frozen=True)
class PlantRegions:
    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2 pixels of the full image
    areas: np.ndarray  # (N,) float32 plant pixels of each region (full-image pixels)
    scores: np.ndarray  # (N,) float32 mean index margin above the threshold, 0-1
    mask: np.ndarray  # (H, W) bool, the regions kept


def plant_regions(image_bgr: np.ndarray, options: VegetationOptions | None = None) -> PlantRegions:
    """Each connected vegetation region of at least `min_area` pixels, with its box, area and
    score (the region's mean index margin over the threshold, as a share of the index's headroom)."""
    options = options or VegetationOptions()
    veg = vegetation_mask(image_bgr, options)
    small = veg.index > veg.threshold
    count, labels, stats, _ = cv2.connectedComponentsWithStats(small.astype(np.uint8), connectivity=8)
    scale = veg.scale
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.float32) / (scale * scale)
    keep = np.flatnonzero(areas >= options.min_area) + 1
    headroom = max(INDEX_RANGE[options.index][1] - veg.threshold, 1e-6)
    margin = np.clip((veg.index - veg.threshold) / headroom, 0, 1)
    sums = np.bincount(labels.ravel(), weights=margin.ravel(), minlength=count)
    scores = (sums[keep] / np.maximum(stats[keep, cv2.CC_STAT_AREA], 1)).astype(np.float32)
    height, width = image_bgr.shape[:2]
    x, y = stats[keep, cv2.CC_STAT_LEFT], stats[keep, cv2.CC_STAT_TOP]
    w, h = stats[keep, cv2.CC_STAT_WIDTH], stats[keep, cv2.CC_STAT_HEIGHT]
    boxes = np.stack([x / scale, y / scale, (x + w) / scale, (y + h) / scale], axis=1).astype(np.float32)
    boxes = np.clip(boxes.reshape(-1, 4), 0, [width, height, width, height]).astype(np.float32)
    return PlantRegions(boxes, areas[keep - 1], scores, veg.mask)
