"""LabelMe / AnyLabeling JSON (one file per image, `shapes` of labelled polygons) -> YOLO boxes.

One box per shape: the min/max of its points (a circle: centre +- radius), clipped to the image;
zero-size boxes (a degenerate polygon) are dropped. The image is found next to the JSON by file
stem, not by `imagePath`, which often names the annotator's own disk (`..\\after_crop\\x.jpg`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from training.data.cards import DatasetCard
from training.data.yolo import Box, pixel_box_to_yolo
from training.trainset import IMAGE_SUFFIXES, DatasetError, densest_label_folder

BOX_SHAPES = ("polygon", "rectangle", "circle")


def labelme_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(image, json) pairs side by side in `root`, sorted by image name."""
    pairs = []
    for image in sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        label = image.with_suffix(".json")
        if label.is_file():
            pairs.append((image, label))
    return pairs


def find_labelme_root(source: Path) -> Path | None:
    """The folder under `source` holding the most image + .json pairs."""
    return densest_label_folder(source, ".json")


def labelme_boxes(card: DatasetCard, path: Path, size: tuple[int, int]) -> list[Box]:
    """The boxes of one LabelMe file for an image of `size` (width, height)."""
    data = _load(path)
    declared = (data.get("imageWidth"), data.get("imageHeight"))
    if None not in declared and tuple(declared) != size:
        raise DatasetError(f"{path}: imageWidth x imageHeight {declared[0]}x{declared[1]} is not "
                           f"the image's {size[0]}x{size[1]}")
    shapes = data.get("shapes")
    if not isinstance(shapes, list):
        raise DatasetError(f"{path} has no 'shapes' list (not a LabelMe file)")
    boxes = []
    for i, shape in enumerate(shapes):
        box = _shape_box(card, path, i, shape, size)
        if box is not None:
            boxes.append(box)
    return boxes


def _shape_box(card: DatasetCard, path: Path, index: int, shape: Any,
               size: tuple[int, int]) -> Box | None:
    where = f"{path}: shape {index}"
    if not isinstance(shape, dict) or "label" not in shape:
        raise DatasetError(f"{where} has no 'label'")
    kind = shape.get("shape_type") or "polygon"
    if kind not in BOX_SHAPES:
        raise DatasetError(f"{where}: shape_type '{kind}' cannot become a box "
                           f"(supported: {', '.join(BOX_SHAPES)})")
    try:
        cls = card.canonical_id(str(shape["label"]))
    except DatasetError as exc:
        raise DatasetError(f"{where}: {exc}") from None
    x1, y1, x2, y2 = _extent(where, kind, shape.get("points"))
    width, height = size
    x1, x2 = max(0.0, x1), min(float(width), x2)
    y1, y2 = max(0.0, y1), min(float(height), y2)
    if cls is None or x2 <= x1 or y2 <= y1:
        return None  # a dropped class, or a point / line / shape outside the image
    return pixel_box_to_yolo(cls, x1, y1, x2, y2, width, height)


def _extent(where: str, kind: str, points: Any) -> tuple[float, float, float, float]:
    try:
        xy = [(float(x), float(y)) for x, y in points]
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: 'points' must be a list of [x, y] numbers") from None
    if not xy or (kind == "circle" and len(xy) != 2):
        raise DatasetError(f"{where}: {len(xy)} points for a {kind}")
    if kind == "circle":  # centre, then a point on the circle
        (cx, cy), (px, py) = xy
        r = math.hypot(px - cx, py - cy)
        return cx - r, cy - r, cx + r, cy + r
    xs, ys = [x for x, _ in xy], [y for _, y in xy]
    return min(xs), min(ys), max(xs), max(ys)


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno}, "
                           f"column {exc.colno})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path} is not a LabelMe file (expected a JSON object)")
    return data
