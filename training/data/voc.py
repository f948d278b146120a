"""Pascal VOC XML (one `<annotation>` per image, `<object><name>` + `<bndbox>`) -> YOLO boxes.

Coordinates are read as pixel edges (LabelImg's convention: xmax = width is the right edge) and
clipped to the image; LabelImg never writes 0 (it raises anything below 1 to 1), so xmin/ymin of
1 are read as the image edge 0. Zero-size boxes are dropped. The image is the `<filename>` (or
the XML's stem) found anywhere under the release folder, e.g. data/*/image/ next to
data/*/annotation/, or VOC's JPEGImages/ next to Annotations/."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from training.data.cards import DatasetCard
from training.data.yolo import Box, pixel_box_to_yolo
from training.trainset import IMAGE_SUFFIXES, DatasetError

_CORNERS = ("xmin", "ymin", "xmax", "ymax")


def find_voc_annotations(source: Path) -> list[Path]:
    """Every .xml under `source` whose root element is <annotation>, sorted."""
    if not source.is_dir():
        return []
    return [p for p in sorted(source.rglob("*.xml")) if _is_voc(p)]


def voc_pairs(source: Path) -> list[tuple[Path, Path]]:
    """(image, xml) pairs: each annotation's image looked up by name under `source`."""
    images: dict[str, list[Path]] = {}
    for p in source.rglob("*"):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            images.setdefault(p.name, []).append(p)
            images.setdefault(p.stem, []).append(p)
    pairs = []
    for xml in find_voc_annotations(source):
        name = _root(xml).findtext("filename") or xml.stem
        found = images.get(Path(name.strip()).name) or images.get(xml.stem) or []
        if len(found) != 1:
            state = "not found" if not found else f"found {len(found)} times"
            raise DatasetError(f"{xml}: its image '{name}' is {state} under {source}")
        pairs.append((found[0], xml))
    return sorted(pairs)


def voc_boxes(card: DatasetCard, path: Path, size: tuple[int, int]) -> list[Box]:
    """The boxes of one VOC file for an image of `size` (width, height)."""
    root = _root(path)
    declared = (root.findtext("size/width"), root.findtext("size/height"))
    if all(declared) and (int(float(declared[0])), int(float(declared[1]))) not in (size, (0, 0)):
        raise DatasetError(f"{path}: <size> {declared[0]}x{declared[1]} is not the image's "
                           f"{size[0]}x{size[1]}")
    boxes = []
    for i, obj in enumerate(root.iter("object")):
        box = _object_box(card, path, i, obj, size)
        if box is not None:
            boxes.append(box)
    return boxes


def _object_box(card: DatasetCard, path: Path, index: int, obj: ET.Element,
                size: tuple[int, int]) -> Box | None:
    where = f"{path}: object {index}"
    name = (obj.findtext("name") or "").strip()
    try:
        cls = card.canonical_id(name)
    except DatasetError as exc:
        raise DatasetError(f"{where}: {exc}") from None
    try:
        x1, y1, x2, y2 = (float(obj.findtext(f"bndbox/{c}") or "") for c in _CORNERS)
    except ValueError:
        raise DatasetError(f"{where} ('{name}') needs numeric bndbox "
                           f"{'/'.join(_CORNERS)}") from None
    width, height = size
    x1, y1 = (0.0 if v <= 1 else v for v in (x1, y1))  # LabelImg's 1 is the image edge
    x1, x2 = max(0.0, x1), min(float(width), x2)
    y1, y2 = max(0.0, y1), min(float(height), y2)
    if cls is None or x2 <= x1 or y2 <= y1:
        return None
    return pixel_box_to_yolo(cls, x1, y1, x2, y2, width, height)


def _root(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DatasetError(f"{path} is not valid XML: {exc}") from None


def _is_voc(path: Path) -> bool:
    try:
        for _, element in ET.iterparse(path, events=("start",)):
            return element.tag == "annotation"
    except ET.ParseError:
        return False
    return False
