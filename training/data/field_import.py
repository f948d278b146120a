"""A field labelled elsewhere, into the data folder as a field dataset (`weedscan data add-field`).

Reads what CVAT, Label Studio and Roboflow export, as a folder or its zip:

- YOLO: label files `class cx cy w h` beside their images (CVAT "YOLO 1.1": obj_train_data/ with
  obj.names) or in a sibling labels/ folder (CVAT "Ultralytics YOLO", Label Studio "YOLO":
  images/ + labels/ + classes.txt, Roboflow "YOLOv5/v8": train|valid|test/images + labels with
  data.yaml); class names from data.yaml, classes.txt, obj.names or another *.names file;
- COCO: CVAT's annotations/instances_SUBSET.json, Label Studio's result.json, Roboflow's
  SPLIT/_annotations.coco.json; boxes [x, y, w, h] in pixels.

Class names map onto crop and weed: `crop` and `weed` map to themselves, every other class that
labels a box needs `--map NAME=crop|weed|drop`. Splits come from the folder names (train, val,
valid, validation, test; anything else is train). Photos are copied byte for byte through the
field store, so the catalogue, sha256 de-duplication and the card are the same as for photos
saved from the page; boxes that overstep the image are clipped, boxes left without area dropped.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tqdm import tqdm

from serving.answer import Box
from serving.errors import ClientError
from serving.fields.labels import CLASSES, LabelBox
from serving.fields.names import check_name
from serving.fields.store import FieldStore
from serving.imaging import IMAGE_SUFFIXES, read_header
from training.trainset import DatasetError

COCO_NAMES = ("_annotations.coco.json", "result.json")  # Roboflow, Label Studio
TARGETS = (*CLASSES, "drop")
_SPLIT_WORDS = {"train": "train", "training": "train", "val": "val", "valid": "val",
                "validation": "val", "test": "test", "testing": "test"}


@dataclass
class Photo:
    path: Path
    split: str
    boxes: list[tuple[str, float, float, float, float]]  # source class, x1, y1, x2, y2 in pixels


@dataclass
class FieldImport:
    layout: str  # "yolo" or "coco"
    photos: list[Photo]
    class_names: list[str]


@dataclass
class ImportReport:
    dataset: str
    folder: Path
    layout: str
    saved: int = 0
    duplicates: int = 0  # the same photo twice in the export: kept once, the last labels win
    splits: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)  # by source class (--map NAME=drop)
    clipped: int = 0
    empty: int = 0  # boxes with no area inside the image


def parse_map(items: list[str]) -> dict[str, str]:
    """`--map OLD=crop|weed|drop` items as {old: target}."""
    mapping: dict[str, str] = {}
    for item in items:
        old, _, target = item.partition("=")
        if not old.strip() or target.strip().lower() not in TARGETS:
            raise DatasetError(f"--map takes NAME=crop|weed|drop, got {item!r}")
        mapping[old.strip()] = target.strip().lower()
    return mapping


@contextmanager
def opened(source: Path) -> Iterator[Path]:
    """The export's folder: `source` itself, or a zip extracted to a temporary folder (member
    paths with `..` or a leading `/` are made safe by zipfile)."""
    if not source.exists():
        raise DatasetError(f"not found: {source}")
    if source.is_file() and zipfile.is_zipfile(source):
        with tempfile.TemporaryDirectory(prefix="weedscan-import-") as temp, \
                zipfile.ZipFile(source) as archive:
            archive.extractall(temp)
            yield Path(temp)
        return
    yield source


def read_export(source: Path) -> FieldImport:
    """The photos and boxes of a YOLO or COCO export (folder, or the COCO JSON file itself)."""
    if source.is_file() and source.suffix.lower() == ".json":
        return read_coco([source], source.parent)
    if not source.is_dir():
        raise DatasetError(f"{source} is neither a folder, a zip nor a COCO JSON file")
    coco = sorted(p for p in source.rglob("*.json") if p.name in COCO_NAMES
                  or (p.name.startswith("instances_") and p.parent.name == "annotations"))
    if coco:
        return read_coco(coco, source)
    return read_yolo(source)


def split_of(parts: tuple[str, ...] | list[str]) -> str:
    """train, val or test from folder or file names (obj_Validation_data, valid, instances_test)."""
    for part in reversed(parts):
        for word in part.lower().replace("-", "_").split("_"):
            if word in _SPLIT_WORDS:
                return _SPLIT_WORDS[word]
    return "train"


# --- YOLO ----------------------------------------------------------------------------------------

def yolo_names(root: Path) -> list[str]:
    """Class names: data.yaml (list or {id: name}), else classes.txt, obj.names or *.names."""
    for data_yaml in sorted(root.rglob("data.yaml"), key=lambda p: len(p.parts)):
        try:
            names = (yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}).get("names")
        except (yaml.YAMLError, AttributeError) as exc:
            raise DatasetError(f"{data_yaml} is not a YOLO data YAML ({exc})") from None
        if isinstance(names, dict):
            return [str(names[k]) for k in sorted(names)]
        if isinstance(names, list):
            return [str(n) for n in names]
        raise DatasetError(f"{data_yaml} has no 'names' list")
    lists = [*sorted(root.rglob("classes.txt")), *sorted(root.rglob("*.names"))]
    for path in sorted(lists, key=lambda p: len(p.parts)):
        names = [n.strip() for n in path.read_text(encoding="utf-8").splitlines()]
        return [n for n in names if n]
    raise DatasetError(f"{root}: no class names found (data.yaml, classes.txt or obj.names)")


def _label_file(image: Path) -> Path | None:
    """x.txt beside the image, or in the labels folder matching its images folder."""
    beside = image.with_suffix(".txt")
    if beside.is_file():
        return beside
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            candidate = Path(*parts[:i], "labels", *parts[i + 1:]).with_suffix(".txt")
            if candidate.is_file():
                return candidate
    return None


def read_yolo(root: Path) -> FieldImport:
    names = yolo_names(root)
    images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise DatasetError(f"{root}: no images found (export the photos with the labels, e.g. "
                           "CVAT's 'Save images')")
    photos = []
    for image in images:
        width, height = _upright_size(image)
        label = _label_file(image)
        boxes = []
        if label is not None:
            for number, line in enumerate(label.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                fields = line.split()
                try:
                    if len(fields) != 5:
                        raise ValueError(f"expected 5 fields (class cx cy w h), got {len(fields)}")
                    cls = int(fields[0])
                    cx, cy, w, h = (float(f) for f in fields[1:])
                    if not 0 <= cls < len(names):
                        raise ValueError(f"class {cls} is not in 0..{len(names) - 1} ({', '.join(names)})")
                except ValueError as exc:
                    raise DatasetError(f"{label}:{number}: {exc}") from None
                boxes.append((names[cls], (cx - w / 2) * width, (cy - h / 2) * height,
                              (cx + w / 2) * width, (cy + h / 2) * height))
        photos.append(Photo(image, split_of(image.relative_to(root).parts[:-1]), boxes))
    return FieldImport("yolo", photos, names)


# --- COCO ----------------------------------------------------------------------------------------

def read_coco(files: list[Path], root: Path) -> FieldImport:
    index: dict[str, list[Path]] = defaultdict(list)
    for path in root.rglob("*"):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            index[path.name].append(path)
    photos: list[Photo] = []
    names: list[str] = []
    missing: list[str] = []
    for coco_file in files:
        try:
            data = json.loads(coco_file.read_text(encoding="utf-8"))
            categories = {c["id"]: str(c["name"]) for c in data["categories"]}
            entries = {i["id"]: i for i in data["images"]}
            annotations = data.get("annotations", [])
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{coco_file} is not a COCO detection file ({exc})") from None
        names += [n for n in categories.values() if n not in names]
        split = split_of([*coco_file.relative_to(root).parts[:-1], coco_file.stem])
        by_image: dict[object, list[tuple[str, float, float, float, float]]] = defaultdict(list)
        for number, ann in enumerate(annotations):
            try:
                x, y, w, h = (float(v) for v in ann["bbox"])
                by_image[ann["image_id"]].append((categories[ann["category_id"]], x, y, x + w, y + h))
            except (KeyError, TypeError, ValueError):
                raise DatasetError(f"{coco_file}: annotation {number} needs 'image_id', a known "
                                   "'category_id' and 'bbox': [x, y, w, h]") from None
        for image_id, entry in entries.items():
            path = _find_image(str(entry.get("file_name", "")), coco_file.parent, root, index)
            if path is None:
                missing.append(str(entry.get("file_name")))
                continue
            width, height = _upright_size(path)
            if (entry.get("width"), entry.get("height")) not in ((width, height), (None, None)):
                raise DatasetError(f"{coco_file}: {entry.get('file_name')} is {entry.get('width')}x"
                                   f"{entry.get('height')} there but {width}x{height} upright")
            photos.append(Photo(path, split, by_image.get(image_id, [])))
    if missing:
        raise DatasetError(f"{len(missing)} photo(s) of the COCO file are not in the export, e.g. "
                           f"{', '.join(missing[:3])} (export the photos with the labels)")
    if not photos:
        raise DatasetError(f"{root}: the COCO file lists no photos")
    return FieldImport("coco", photos, names)


def _find_image(file_name: str, folder: Path, root: Path, index: dict[str, list[Path]]) -> Path | None:
    relative = file_name.replace("\\", "/").lstrip("/")
    for base in (folder, folder / "images", folder.parent, folder.parent / "images", root,
                 root / "images"):
        candidate = base / relative
        if ".." not in Path(relative).parts and candidate.is_file():
            return candidate
    found = index.get(Path(relative).name, [])
    return found[0] if len(found) == 1 else None


def _upright_size(path: Path) -> tuple[int, int]:
    try:
        header = read_header(path.read_bytes())
    except ClientError as exc:
        raise DatasetError(f"{path}: {exc.message}") from None
    return header.width, header.height


# --- into the store ------------------------------------------------------------------------------

def resolve_map(found: FieldImport, mapping: dict[str, str]) -> dict[str, str]:
    """Every class that labels a box -> crop, weed or drop; an error names the unmapped ones."""
    unknown = sorted(set(mapping) - set(found.class_names))
    if unknown:
        raise DatasetError(f"--map names class(es) not in the export: {', '.join(unknown)} "
                           f"(its classes: {', '.join(found.class_names)})")
    used = sorted({box[0] for photo in found.photos for box in photo.boxes})
    resolved = {name: mapping.get(name, name.lower() if name.lower() in CLASSES else "") for name in used}
    unmapped = [n for n, target in resolved.items() if not target]
    if unmapped:
        hint = " ".join(f"--map {n if n.replace('_', '').isalnum() else repr(n)}=weed" for n in unmapped)
        raise DatasetError(f"class(es) {', '.join(unmapped)} need a mapping to crop, weed or drop, "
                           f"e.g. {hint}")
    return resolved


def import_field(source: Path, store: FieldStore, name: str, crop: str | None,
                 mapping: dict[str, str], licence: str = "private", append: bool = False,
                 progress: bool = True) -> ImportReport:
    """Read the export at `source` (folder, zip or COCO JSON) and save its photos into the field
    dataset `name` (created, or with `append` added to). A new dataset is removed again when the
    import fails part way; an appended one keeps the photos saved before the failure."""
    try:
        check_name(name)
    except ClientError as exc:
        raise DatasetError(exc.message) from None
    with opened(source) as folder:
        found = read_export(folder)
        targets = resolve_map(found, mapping)
        created = _ensure_dataset(store, name, crop, licence, append)
        report = ImportReport(dataset=name, folder=store.folder(name), layout=found.layout)
        try:
            for photo in tqdm(found.photos, desc=f"add {name}", unit="img",
                              disable=None if progress else True):
                _save(store, name, photo, targets, report)
        except BaseException:
            if created:
                store.delete_dataset(name)
            raise
    return report


def _save(store: FieldStore, name: str, photo: Photo, targets: dict[str, str],
          report: ImportReport) -> None:
    data = photo.path.read_bytes()
    width, height = _upright_size(photo.path)
    labels = []
    for cls, x1, y1, x2, y2 in photo.boxes:
        target = targets[cls]
        if target == "drop":
            report.dropped[cls] += 1
            continue
        clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            report.empty += 1
            continue
        report.clipped += clipped != (x1, y1, x2, y2)
        labels.append(LabelBox(class_name=target, box=Box(  # type: ignore[arg-type]
            x1=clipped[0], y1=clipped[1], x2=clipped[2], y2=clipped[3])))
    try:
        saved = store.add_image(name, data, labels, photo.path.name, photo.split)  # type: ignore[arg-type]
    except ClientError as exc:
        raise DatasetError(f"{photo.path}: {exc.message}") from None
    if saved.created:
        report.saved += 1
        report.splits[photo.split] += 1
    else:
        report.duplicates += 1


def _ensure_dataset(store: FieldStore, name: str, crop: str | None, licence: str,
                    append: bool) -> bool:
    """True when the dataset was made now."""
    try:
        if name in {d.name for d in store.list_datasets()}:
            if not append:
                raise DatasetError(f"field dataset {name!r} exists in {store.data_dir}; give "
                                   "--append to add these photos to it")
            return False
        if not crop:
            raise DatasetError("give the field's crop with --crop (free text, e.g. --crop carrot)")
        store.create_dataset(name, crop, licence)
        return True
    except ClientError as exc:
        raise DatasetError(exc.message) from None
