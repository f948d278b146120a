"""Validate a YOLO dataset folder: images decode, label lines are well formed, no duplicates.

Problems (an image that does not decode, a bad label line, a duplicate image, a missing split
folder) fail the check; an image without a label file (a background image to YOLO) or a label
file without an image is a warning, or a problem with `strict`. Each names the file, and the line
where there is one."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from training.data.yolo import parse_label_line, yaml_problem
from training.trainset import DatasetError, YoloDataset, labels_folder


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message}"


@dataclass
class SplitStats:
    images: int = 0
    background: int = 0  # images without boxes (empty or missing label file)
    boxes: Counter[int] = field(default_factory=Counter)


@dataclass
class CheckReport:
    root: Path
    names: list[str]
    splits: dict[str, SplitStats] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def load_yolo(path: Path) -> YoloDataset:
    """The dataset at a folder (with data.yaml) or a data YAML; DatasetError when unusable."""
    if not path.exists():
        raise DatasetError(f"dataset folder not found: {path}")
    yaml_path = path / "data.yaml" if path.is_dir() else path
    if yaml_path.is_file():  # a short message for broken YAML, before YoloDataset reads it
        try:
            yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise DatasetError(f"{yaml_path} is not valid YAML: {yaml_problem(exc)}") from None
    try:
        ds = YoloDataset.from_yaml(path)
    except (TypeError, KeyError, ValueError, AttributeError):
        raise DatasetError(f"{path} is not a YOLO data YAML (it needs 'names' and splits)") from None
    if not ds.names:
        raise DatasetError(f"{path}: 'names' is empty")
    if not ds.splits:
        raise DatasetError(f"{path}: no train/val/test split is declared")
    return ds


def check_dataset(path: Path, strict: bool = False, progress: bool = False) -> CheckReport:
    ds = load_yolo(path)
    report = CheckReport(root=ds.root, names=ds.names)
    yaml_path = path / "data.yaml" if path.is_dir() else path
    minor = report.problems if strict else report.warnings
    seen: dict[str, Path] = {}  # hash of the bytes -> first image with them
    for split, target in ds.splits.items():
        images = _split_images(ds, split, target, yaml_path, report.problems)
        stats = report.splits.setdefault(split, SplitStats())
        expected_labels: set[Path] = set()
        for image in tqdm(images, desc=f"check {split}", unit="img",
                          disable=None if progress else True):
            stats.images += 1
            _check_image(image, seen, report.problems)
            try:
                label = labels_folder(image.parent) / f"{image.stem}.txt"
            except ValueError:
                report.problems.append(Problem(image, None, "not under an 'images' folder, so "
                                                            "YOLO cannot find its label file"))
                continue
            expected_labels.add(label)
            boxes = _check_label(label, len(ds.names), report.problems, minor)
            stats.boxes.update(boxes)
            stats.background += not boxes
        if target.is_dir():
            for orphan in sorted(set(labels_folder(target).rglob("*.txt")) - expected_labels):
                minor.append(Problem(orphan, None, "label file without an image"))
    return report


def _split_images(ds: YoloDataset, split: str, target: Path, yaml_path: Path,
                  problems: list[Problem]) -> list[Path]:
    if target.is_dir():
        return ds.images(split)
    if not target.is_file():
        problems.append(Problem(yaml_path, None, f"'{split}' points at {target}, which does not exist"))
        return []
    images: dict[Path, None] = {}  # a list file may repeat an image on purpose (oversampling)
    for number, line in enumerate(target.read_text(encoding="utf-8").splitlines(), 1):
        entry = line.strip()
        if not entry:
            continue
        image = target.parent / entry[2:] if entry.startswith("./") else Path(entry)
        if image.is_file():
            images[image] = None
        else:
            problems.append(Problem(target, number, f"listed image not found: {entry}"))
    return list(images)


def _check_image(image: Path, seen: dict[str, Path], problems: list[Problem]) -> None:
    data = image.read_bytes()
    if not data:
        problems.append(Problem(image, None, "empty file"))
        return
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    if digest in seen:
        problems.append(Problem(image, None, f"duplicate image: same bytes as {seen[digest]}"))
    else:
        seen[digest] = image
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        decoded = None
    if decoded is None or decoded.size == 0:
        problems.append(Problem(image, None, "image does not decode (corrupt, truncated or not "
                                             "an image)"))


def _check_label(label: Path, nc: int, problems: list[Problem],
                 minor: list[Problem]) -> Counter[int]:
    boxes: Counter[int] = Counter()
    if not label.is_file():
        minor.append(Problem(label, None, "image without a label file (read as background)"))
        return boxes
    try:
        text = label.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        problems.append(Problem(label, None, "label file is not UTF-8 text"))
        return boxes
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            boxes[parse_label_line(line, nc)[0]] += 1
        except ValueError as exc:
            problems.append(Problem(label, number, str(exc)))
    return boxes


def format_report(report: CheckReport) -> str:
    """Counts per split and class, as a small table."""
    names = report.names
    widths = [max(6, len(n) + 1) for n in names]
    lines = [f"{report.root}  classes: {', '.join(names)}",
             f"{'split':<8}{'images':>8}{'background':>12}"
             + "".join(f"{n:>{w + 2}}" for n, w in zip(names, widths))]
    total = SplitStats()
    for split, stats in report.splits.items():
        total.images += stats.images
        total.background += stats.background
        total.boxes.update(stats.boxes)
        lines.append(_row(split, stats, widths))
    if len(report.splits) > 1:
        lines.append(_row("total", total, widths))
    return "\n".join(lines)


def _row(label: str, stats: SplitStats, widths: list[int]) -> str:
    return (f"{label:<8}{stats.images:>8}{stats.background:>12}"
            + "".join(f"{stats.boxes[i]:>{w + 2}}" for i, w in enumerate(widths)))
