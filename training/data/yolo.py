"""Small YOLO-format helpers shared by convert, check and merge: label lines, data.yaml, and
writing an output dataset folder safely (never over a source, never over unrelated files)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from training.trainset import CANONICAL_CLASSES, DatasetError

SPLITS = ("train", "val", "test")
Box = tuple[int, float, float, float, float]  # class, cx, cy, w, h (normalised)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one short line: what is wrong and where."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else problem


def parse_label_line(line: str, nc: int) -> Box:
    """One `class cx cy w h` line; ValueError says what is wrong with it."""
    fields = line.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (class cx cy w h), got {len(fields)}")
    try:
        cls = int(fields[0])
    except ValueError:
        raise ValueError(f"class '{fields[0]}' is not an integer") from None
    if not 0 <= cls < nc:
        raise ValueError(f"class {cls} is not in 0..{nc - 1}")
    try:
        cx, cy, w, h = (float(f) for f in fields[1:])
    except ValueError:
        raise ValueError("coordinates must be numbers") from None
    if not all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)):
        raise ValueError("coordinates must lie in [0, 1]")
    if w <= 0 or h <= 0:
        raise ValueError("box width and height must be > 0")
    return cls, cx, cy, w, h


def format_box(box: Box) -> str:
    cls, cx, cy, w, h = box
    return f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


def pixel_box_to_yolo(cls: int, x1: float, y1: float, x2: float, y2: float,
                      width: int, height: int) -> Box:
    return (cls, (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width,
            (y2 - y1) / height)


def write_data_yaml(folder: Path, splits: list[str], comment: str) -> Path:
    """data.yaml in the layout of ../shared/data: paths relative to its folder, canonical names."""
    body: dict[str, object] = {s: f"images/{s}" for s in SPLITS if s in splits}
    body.update(nc=len(CANONICAL_CLASSES), names=list(CANONICAL_CLASSES))
    path = folder / "data.yaml"
    path.write_text(f"# {comment}\n# Paths are relative to this file's folder.\n"
                    + yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


@contextmanager
def output_folder(out: Path, sources: list[Path]) -> Iterator[Path]:
    """Yield a fresh staging folder that replaces `out` when the block succeeds.

    Refuses an `out` that overlaps a source, or that holds files but is not a dataset (no
    data.yaml), so a typo cannot wipe unrelated data."""
    out = out.absolute()
    for src in sources:
        a, b = out.resolve(), src.resolve()
        if a == b or a.is_relative_to(b) or b.is_relative_to(a):
            raise DatasetError(f"output folder {out} overlaps the source {src}; choose another --out")
    unrelated = out.is_dir() and any(out.iterdir()) and not (out / "data.yaml").exists()
    if out.exists() and (not out.is_dir() or unrelated):
        raise DatasetError(f"output folder {out} exists and is not a dataset folder; "
                           "choose an empty or new --out")
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
