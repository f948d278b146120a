"""Native dataset releases -> YOLO folders on the canonical classes (crop, weed).

`import_dataset` takes either a native release (CWFID polygon YAMLs, sesame YOLO txt pairs,
LabelMe JSON polygons, Pascal VOC XML) or an already-converted YOLO folder (one with data.yaml),
and writes images/{split}, labels/{split}, data.yaml and SOURCE.md. Images are copied byte for
byte, never re-encoded."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml
from PIL import Image
from tqdm import tqdm

from training.data.cards import DatasetCard
from training.data.check import check_dataset
from training.data.labelme import find_labelme_root, labelme_boxes, labelme_pairs
from training.data.split import block_split, group_split, near_duplicate_groups, seeded_split
from training.data.voc import find_voc_annotations, voc_boxes, voc_pairs
from training.data.yolo import (
    Box,
    format_box,
    output_folder,
    parse_label_line,
    pixel_box_to_yolo,
    write_data_yaml,
    yaml_problem,
)
from training.trainset import IMAGE_SUFFIXES, DatasetError, YoloDataset, densest_label_folder, labels_folder

_CWFID_IMAGE = re.compile(r"^(\d+)_image\.png$")
_MASK_CHANNEL = {"crop": 1, "weed": 2}  # BGR channel of each plant type in NNN_annotation.png


@dataclass(frozen=True)
class Sample:
    split: str
    image: Path       # source image, copied as is
    stem: str         # output file name without suffix
    boxes: list[Box]


@dataclass(frozen=True)
class ImportResult:
    data_yaml: Path
    layout: str                 # "native" or "yolo"
    images: dict[str, int]      # split -> image count
    boxes: int


def import_dataset(card: DatasetCard, source: Path, out: Path,
                   progress: bool = True) -> ImportResult:
    """Convert `source` (native release or YOLO folder) into the YOLO folder `out`."""
    layout, root = detect_layout(card, source)
    if layout == "yolo":
        samples = yolo_samples(card, root)
    elif card.native_format == "cwfid-polygon-yaml":
        samples = cwfid_samples(card, root)
    elif card.native_format == "labelme-json":
        samples = paired_samples(card, labelme_pairs(root), labelme_boxes, progress)
    elif card.native_format == "voc-xml":
        samples = paired_samples(card, voc_pairs(root), voc_boxes, progress)
    else:
        samples = yolo_txt_samples(card, root, progress)
    if not samples:
        raise DatasetError(f"no images found in {root}")
    with output_folder(out, [source]) as staging:
        for s in tqdm(samples, desc=f"write {card.name}", unit="img", disable=None if progress else True):
            image_dir, label_dir = staging / "images" / s.split, staging / "labels" / s.split
            (image_dir / s.stem).parent.mkdir(parents=True, exist_ok=True)
            (label_dir / s.stem).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(s.image, image_dir / f"{s.stem}{s.image.suffix.lower()}")
            lines = "".join(format_box(b) + "\n" for b in s.boxes)
            (label_dir / f"{s.stem}.txt").write_text(lines, encoding="utf-8")
        splits = sorted({s.split for s in samples})
        write_data_yaml(staging, splits, f"YOLO detection dataset: {card.title}, written by "
                                         f"`weedscan data import {card.name}`.")
        _write_source_md(card, source, layout, staging)
        report = check_dataset(staging)
        if not report.ok:
            raise DatasetError(f"converted {card.name} failed its check: {report.problems[0]}")
    counts = Counter(s.split for s in samples)
    return ImportResult(data_yaml=out.absolute() / "data.yaml", layout=layout,
                        images=dict(counts), boxes=sum(len(s.boxes) for s in samples))


def detect_layout(card: DatasetCard, source: Path) -> tuple[str, Path]:
    """("yolo", data.yaml) for a converted folder, ("native", release root) for a native one."""
    if not source.exists():
        raise DatasetError(f"folder not found: {source}")
    if source.is_file() and source.suffix in (".yaml", ".yml"):
        return "yolo", source
    if (source / "data.yaml").is_file():
        return "yolo", source / "data.yaml"
    root = _find_native_root(card.native_format, source)
    if root is None:
        expected = _EXPECTED[card.native_format]
        raise DatasetError(f"{source} is neither a YOLO dataset (no data.yaml) nor a native "
                           f"{card.name} release (expected {expected})")
    return "native", root


_EXPECTED = {
    "cwfid-polygon-yaml": "images/NNN_image.png + annotations/NNN_annotation.yaml",
    "yolo-txt": "image + .txt label pairs",
    "labelme-json": "image + LabelMe .json pairs side by side",
    "voc-xml": "Pascal VOC .xml annotations and their images",
}


def _find_native_root(native_format: str, source: Path) -> Path | None:
    if native_format == "cwfid-polygon-yaml":
        return _find_cwfid_root(source)
    if native_format == "labelme-json":
        return find_labelme_root(source)
    if native_format == "voc-xml":
        return source if find_voc_annotations(source) else None
    return densest_label_folder(source, ".txt")


# --- CWFID: polygon YAML per image -------------------------------------------------------------

def cwfid_samples(card: DatasetCard, root: Path) -> list[Sample]:
    ids = {int(m.group(1)): p for p in (root / "images").iterdir()
           if (m := _CWFID_IMAGE.match(p.name))}
    splits = _cwfid_splits(card, root, sorted(ids))
    samples = []
    for num, image in sorted(ids.items()):
        ann = root / "annotations" / f"{num:03d}_annotation.yaml"
        if not ann.is_file():
            raise DatasetError(f"annotation missing for {image}: {ann}")
        mask = ann.with_suffix(".png")
        boxes = cwfid_boxes(card, ann, _image_size(image), mask if mask.is_file() else None)
        samples.append(Sample(splits[num], image, f"{card.name}_{num:03d}", boxes))
    return samples


def _cwfid_splits(card: DatasetCard, root: Path, ids: list[int]) -> dict[int, str]:
    split_file = root / (card.split.file or "train_test_split.yaml")
    if not split_file.is_file():  # no official split: a seeded one
        by_key = seeded_split([str(i) for i in ids], card.split.seed, card.split.val, card.split.test)
        return {i: by_key[str(i)] for i in ids}
    data = _load_yaml(split_file)
    try:
        train, test = {int(i) for i in data["train"]}, {int(i) for i in data["test"]}
    except (TypeError, KeyError, ValueError):
        raise DatasetError(f"{split_file} must list integer image ids under 'train' and 'test'") from None
    train -= test  # an id in both lists (CWFID: 28) stays in test only
    train |= set(ids) - test - train  # ids the file does not list are trained on
    val = set(sorted(train)[2::5])  # every 5th train id from the 3rd, as in ../shared/data/cwfid
    return {i: "test" if i in test else "val" if i in val else "train" for i in ids}


def cwfid_boxes(card: DatasetCard, annotation: Path, size: tuple[int, int],
                mask_path: Path | None = None) -> list[Box]:
    """One box per plant polygon: its pixels of the plant's class in the annotation PNG when
    given (a tight box), else the polygon's bbox clipped to the image; zero-size boxes dropped."""
    width, height = size
    data = _load_yaml(annotation)
    plants = data.get("annotation") if isinstance(data, dict) else None
    if not isinstance(plants, list):
        raise DatasetError(f"{annotation} has no 'annotation' list")
    mask = cv2.imread(str(mask_path), cv2.IMREAD_COLOR) if mask_path else None
    boxes = []
    for i, plant in enumerate(plants):
        try:
            kind = str(plant["type"])
            xs = np.atleast_1d(np.asarray(plant["points"]["x"], dtype=np.float64))
            ys = np.atleast_1d(np.asarray(plant["points"]["y"], dtype=np.float64))
        except (TypeError, KeyError, ValueError):
            raise DatasetError(f"{annotation}: plant {i} needs 'type' and numeric "
                               "'points: {x: [...], y: [...]}'") from None
        if xs.size == 0 or xs.shape != ys.shape:
            raise DatasetError(f"{annotation}: plant {i} has {xs.size} x and {ys.size} y points")
        try:
            cls = card.canonical_id(kind)
        except DatasetError as exc:
            raise DatasetError(f"{annotation}: plant {i}: {exc}") from None
        x1, x2 = np.clip([xs.min(), xs.max()], 0, width)
        y1, y2 = np.clip([ys.min(), ys.max()], 0, height)
        if cls is None or x2 <= x1 or y2 <= y1:
            continue  # dropped class, or a single point / line
        if mask is not None and kind in _MASK_CHANNEL:
            x1, y1, x2, y2 = _tighten(mask, xs, ys, _MASK_CHANNEL[kind], (x1, y1, x2, y2))
        boxes.append(pixel_box_to_yolo(cls, x1, y1, x2, y2, width, height))
    return boxes


def _tighten(mask: np.ndarray, xs: np.ndarray, ys: np.ndarray, channel: int,
             fallback: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """bbox of the polygon's pixels painted in the plant's colour; `fallback` when there are none."""
    polygon = np.zeros(mask.shape[:2], np.uint8)
    cv2.fillPoly(polygon, [np.stack([xs, ys], axis=1).round().astype(np.int32)], 1)
    other = 2 if channel == 1 else 1
    plant = (polygon > 0) & (mask[..., channel] > 127) & (mask[..., other] < 128)
    rows, cols = np.nonzero(plant)
    if rows.size == 0:
        return fallback
    return float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)


def _find_cwfid_root(source: Path) -> Path | None:
    if not source.is_dir():
        return None
    candidates = [source, *sorted(source.glob("*")), *sorted(source.glob("*/*"))]
    return next((c for c in candidates if (c / "annotations").is_dir() and (c / "images").is_dir()),
                None)


# --- YOLO txt pairs (sesame): image.jpeg + image.txt side by side -----------------------------

def yolo_txt_samples(card: DatasetCard, root: Path, progress: bool = True) -> list[Sample]:
    names = _native_names(card, root)
    images = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    boxes = {p: _read_labels(card, p.with_suffix(".txt"), names) for p in images}
    split = assign_splits(card, images, progress)
    return [Sample(split[p], p, p.stem, boxes[p]) for p in images]


def assign_splits(card: DatasetCard, images: list[Path], progress: bool = True) -> dict[Path, str]:
    """image -> split by the card's method: groups (near-duplicates together), blocks (tile
    columns / video frames by the position in the name), else seeded (image by image)."""
    method = card.split.method
    if method == "blocks":
        by_stem = block_split([p.stem for p in images], card.split.key or "", card.split.val,
                              card.split.test, card.split.at)
        return {p: by_stem[p.stem] for p in images}
    if method == "groups":
        groups = near_duplicate_groups(list(tqdm(images, desc="hash", unit="img",
                                                 disable=None if progress else True)))
        by_name = group_split([[p.name for p in g] for g in groups], card.split.seed,
                              card.split.val, card.split.test)
    else:  # seeded, or "file" for a format without a split file of its own
        by_name = seeded_split([p.name for p in images], card.split.seed, card.split.val,
                               card.split.test)
    return {p: by_name[p.name] for p in images}


# --- one annotation file per image (LabelMe JSON, Pascal VOC XML) ------------------------------

BoxReader = Callable[[DatasetCard, Path, tuple[int, int]], list[Box]]


def paired_samples(card: DatasetCard, pairs: list[tuple[Path, Path]], read_boxes: BoxReader,
                   progress: bool = True) -> list[Sample]:
    """Samples from (image, annotation) pairs, split by the card; stems must be unique."""
    stems = Counter(image.stem for image, _ in pairs)
    if dupes := sorted(s for s, n in stems.items() if n > 1):
        raise DatasetError(f"dataset {card.name}: several images are named {', '.join(dupes[:5])}")
    boxes = {image: read_boxes(card, label, _image_size(image)) for image, label in pairs}
    split = assign_splits(card, [image for image, _ in pairs], progress)
    return [Sample(split[image], image, image.stem, boxes[image]) for image, _ in pairs]


def _native_names(card: DatasetCard, root: Path) -> list[str]:
    """classes.txt next to the files or in a folder above, else the card's native names."""
    for folder in (root, *root.parents[:3]):
        for candidate in (folder / "classes.txt", folder / "dataset" / "classes.txt"):
            if candidate.is_file():
                names = [n.strip() for n in candidate.read_text(encoding="utf-8").splitlines()]
                return [n for n in names if n]
    return card.native_names


def _read_labels(card: DatasetCard, path: Path, names: list[str]) -> list[Box]:
    if not path.is_file():
        return []  # an image without a label file holds no plants
    boxes = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            cls, cx, cy, w, h = parse_label_line(line, len(names))
        except ValueError as exc:
            raise DatasetError(f"{path}:{number}: {exc}") from None
        try:
            target = card.canonical_id(names[cls])
        except DatasetError as exc:
            raise DatasetError(f"{path}:{number}: {exc}") from None
        if target is not None:
            boxes.append((target, cx, cy, w, h))
    return boxes


# --- an already-converted YOLO folder: validate, map classes, copy -----------------------------

def yolo_samples(card: DatasetCard, data_yaml: Path) -> list[Sample]:
    try:
        ds = YoloDataset.from_yaml(data_yaml)
    except (TypeError, KeyError, ValueError, AttributeError):
        raise DatasetError(f"{data_yaml} is not a YOLO data YAML (it needs 'names' and splits)") from None
    samples = []
    for split in ds.splits:
        folder = ds.splits[split]
        if not folder.is_dir():
            raise DatasetError(f"{data_yaml}: the '{split}' images folder {folder} does not exist")
        for image in ds.images(split):
            label = labels_folder(image.parent) / f"{image.stem}.txt"
            stem = image.relative_to(folder).with_suffix("").as_posix()
            samples.append(Sample(split, image, stem, _read_labels(card, label, ds.names)))
    return samples


# --- helpers -----------------------------------------------------------------------------------

def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, SyntaxError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from None


def _load_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path} is not valid YAML: {yaml_problem(exc)}") from None


def _write_source_md(card: DatasetCard, source: Path, layout: str, folder: Path) -> None:
    use = {True: "allowed", False: "NOT allowed", None: "unverified"}[card.licence.commercial_use]
    folder.joinpath("SOURCE.md").write_text(
        f"# {card.title}\n\n- Homepage: {card.homepage}\n- Converted by `weedscan data import "
        f"{card.name}` from {source.absolute()} ({layout} layout)\n- Licence: {card.licence.name} "
        f"(commercial use: {use})\n\n{card.licence.text}\n\n## Citation\n```\n{card.citation}\n```\n",
        encoding="utf-8")
