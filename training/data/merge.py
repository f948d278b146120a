"""Merge several YOLO datasets into one on the canonical classes (crop, weed).

Images are copied or symlinked as `<dataset>__<name>`, labels rewritten with the class ids mapped
(optionally through a remap such as `sugarbeet=crop` or `grass=drop`). `repeats` oversamples a
small dataset's train images through a train.txt list, since a folder cannot hold one file twice.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal

import yaml
from tqdm import tqdm

from training.data.check import load_yolo
from training.data.yolo import SPLITS, Box, format_box, output_folder, parse_label_line
from training.trainset import CANONICAL_CLASSES, DatasetError, YoloDataset, labels_folder

DROP = "drop"


def merge_datasets(sources: list[Path], out: Path, repeats: dict[str, int] | None = None,
                   remap: dict[str, str] | None = None, mode: Literal["copy", "link"] = "link",
                   progress: bool = True) -> Path:
    """Write the merged dataset to `out`; returns its data.yaml."""
    repeats, remap = repeats or {}, remap or {}
    if not sources:
        raise DatasetError("give at least one dataset folder to merge")
    datasets = [load_yolo(p) for p in sources]
    names = [ds.name for ds in datasets]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise DatasetError(f"several datasets are named {', '.join(dupes)} (the folder name); "
                           "rename a folder so each name is unique")
    if unknown := sorted(set(repeats) - set(names)):
        raise DatasetError(f"--repeat names unknown dataset(s): {', '.join(unknown)} "
                           f"(merging: {', '.join(names)})")
    for target in remap.values():
        if target not in (*CANONICAL_CLASSES, DROP):
            raise DatasetError(f"--remap target '{target}' is not one of "
                               f"{', '.join(CANONICAL_CLASSES)} or {DROP}")
    class_maps = {ds.name: _class_map(ds, remap) for ds in datasets}
    lists: dict[str, list[str]] = {}
    with output_folder(out, sources) as staging:
        for ds in datasets:
            for split, folder in ds.splits.items():
                if split not in SPLITS or not folder.is_dir():
                    raise DatasetError(f"dataset {ds.name}: the '{split}' images folder {folder} "
                                       "does not exist (merge takes folder splits)")
                written = _merge_split(ds, split, folder, staging, class_maps[ds.name], mode, progress)
                copies = repeats.get(ds.name, 1) if split == "train" else 1
                lists.setdefault(split, []).extend(written * copies)
        return _write_yaml(staging, lists, names, repeats, out)


def _class_map(ds: YoloDataset, remap: dict[str, str]) -> dict[int, int | None]:
    mapping: dict[int, int | None] = {}
    for i, name in enumerate(ds.names):
        target = remap.get(name, name)
        if target == DROP:
            mapping[i] = None
        elif target in CANONICAL_CLASSES:
            mapping[i] = CANONICAL_CLASSES.index(target)
        else:
            raise DatasetError(f"dataset {ds.name}: class '{name}' is not one of "
                               f"{', '.join(CANONICAL_CLASSES)}; map it with --remap "
                               f"{name}=crop|weed|{DROP}")
    return mapping


def _merge_split(ds: YoloDataset, split: str, folder: Path, staging: Path,
                 class_map: dict[int, int | None], mode: str, progress: bool) -> list[str]:
    """Place one split's images and labels; returns their `./images/...` list entries."""
    image_dir, label_dir = staging / "images" / split, staging / "labels" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for image in tqdm(ds.images(split), desc=f"merge {ds.name}/{split}", unit="img",
                      disable=None if progress else True):
        stem = f"{ds.name}__" + "__".join(image.relative_to(folder).with_suffix("").parts)
        target = image_dir / f"{stem}{image.suffix.lower()}"
        if mode == "link":
            os.symlink(image.resolve(), target)
        else:
            shutil.copyfile(image, target)
        label = labels_folder(image.parent) / f"{image.stem}.txt"
        if label.is_file():  # no label file stays no label file (a background image)
            boxes = _mapped_boxes(label, len(ds.names), class_map)
            (label_dir / f"{stem}.txt").write_text("".join(format_box(b) + "\n" for b in boxes),
                                                   encoding="utf-8")
        entries.append(f"./images/{split}/{target.name}")
    return entries


def _mapped_boxes(label: Path, nc: int, class_map: dict[int, int | None]) -> list[Box]:
    boxes = []
    for number, line in enumerate(label.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            cls, cx, cy, w, h = parse_label_line(line, nc)
        except ValueError as exc:
            raise DatasetError(f"{label}:{number}: {exc}") from None
        if class_map[cls] is not None:
            boxes.append((class_map[cls], cx, cy, w, h))
    return boxes


def _write_yaml(staging: Path, lists: dict[str, list[str]], names: list[str],
                repeats: dict[str, int], out: Path) -> Path:
    body: dict[str, object] = {}
    for split in SPLITS:
        if split not in lists:
            continue
        if split == "train" and any(k > 1 for k in repeats.values()):
            (staging / "train.txt").write_text("\n".join(lists[split]) + "\n", encoding="utf-8")
            body[split] = "train.txt"
        else:
            body[split] = f"images/{split}"
    body.update(nc=len(CANONICAL_CLASSES), names=list(CANONICAL_CLASSES))
    note = ", ".join(f"{n} x{repeats.get(n, 1)}" for n in names)
    (staging / "data.yaml").write_text(
        f"# YOLO detection dataset merged by `weedscan data merge` from: {note}.\n"
        "# Paths are relative to this file's folder.\n" + yaml.safe_dump(body, sort_keys=False),
        encoding="utf-8")
    return out.absolute() / "data.yaml"
