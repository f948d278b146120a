"""`weedscan detect`: image files in, one JSON line per image out (the per-file pipeline that
`weedscan batch` runs too), and with --save-dir the annotated copies."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from serving.cli_options import (
    ClassesOption,
    ConfOption,
    IouOption,
    LanesOption,
    MaxDetOption,
    MinAreaOption,
    ModelOption,
    ModeOption,
    TileOption,
    VegIndexOption,
    VegThresholdOption,
    cli_model,
    cli_params,
    cli_query,
    fail,
    open_detector,
)
from serving.config import Settings
from serving.result import DetectionResult


def detect(
    images: Annotated[list[Path], typer.Argument(
        help="image files, folders (walked recursively) or globs ('survey/**/*.JPG')")],
    model: ModelOption = None,
    conf: ConfOption = None,
    iou: IouOption = None,
    classes: ClassesOption = None,
    max_det: MaxDetOption = None,
    tile: TileOption = None,
    lanes: LanesOption = None,
    save_dir: Annotated[Path | None, typer.Option(
        help="also write annotated images here, in each input's format and folder layout")] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite annotated images already in "
                                        "--save-dir (never an input image)")] = False,
    mode: ModeOption = "model",
    veg_index: VegIndexOption = None,
    veg_threshold: VegThresholdOption = None,
    min_area: MinAreaOption = None,
    vegetation_mask: Annotated[bool, typer.Option(
        "--vegetation-mask", help="also write the plant mask the weed cover is measured on "
        "(run-length encoded, as the API's vegetation_mask=true)")] = False,
) -> None:
    """Detect crops and weeds in image files: one JSON line per image on stdout.

    Takes the HTTP API's options (conf, iou, classes, max-det, tile, lanes, mode ...), same checks.

    Example: weedscan detect field1.jpg survey/ --classes weed --lanes 4 --save-dir out/
             weedscan detect fallow.jpg --mode green --lanes 8
    """
    from serving.answer import BatchErrorRecord, wire_json
    from serving.batch.inputs import InputError, expand_inputs
    from serving.file_pipeline import FileSettings, ImageDetector, detect_file
    from serving.green import GreenDetector

    settings = Settings()
    model_path = cli_model(model, settings)
    params = cli_params(conf=conf, iou=iou, classes=classes, max_det=max_det, tile=tile,
                        lanes=lanes, mode=mode, veg_index=veg_index, veg_threshold=veg_threshold,
                        min_area=min_area)  # checked before the model loads
    detector: ImageDetector
    if params.mode == "green":
        query = cli_query(params, None)
        assert query.green is not None
        detector = GreenDetector(query.green)
    else:
        model_detector = open_detector(model_path, settings.threads)
        query = cli_query(params, model_detector.class_ids_for)
        detector = model_detector
    try:
        paths = expand_inputs(images)
    except InputError as exc:
        fail(str(exc))
    save = None
    if save_dir is not None:
        save = annotated_saver(paths, save_dir, force)
    options = replace(query.options, cover="always") if vegetation_mask else query.options
    files = FileSettings(options=options, lanes=query.lanes, max_pixels=settings.max_pixels,
                         max_bytes=settings.max_upload_bytes, vegetation_mask=vegetation_mask)
    failures = 0
    for path in paths:
        record = detect_file(path, detector, files, save)
        failures += isinstance(record, BatchErrorRecord)
        sys.stdout.write(wire_json(record).decode() + "\n")
        sys.stdout.flush()
    if failures:
        raise typer.Exit(1)


def annotated_saver(paths: list[Path], save_dir: Path,
                    force: bool) -> Callable[[str, np.ndarray, DetectionResult, bytes], Path]:
    """What writes each input's annotated copy under save_dir; an existing file or an input in
    the way is refused here, before any work, not halfway."""
    targets = {str(p): t for p, t in annotated_paths(paths, save_dir).items()}
    guard = SaveGuard(paths, force)
    for target in targets.values():
        guard.check(target, fail)

    def save(path: str, image: np.ndarray, result: DetectionResult, data: bytes) -> Path:
        return save_annotated(image, result, data, targets[path], guard)

    return save


def annotated_paths(paths: list[Path], save_dir: Path) -> dict[Path, Path]:
    """Where each input's annotated copy goes: its path below the inputs' common folder, so
    a/x.jpg and b/x.jpg stay apart (save_dir/a/x.jpg, save_dir/b/x.jpg). Paths as named, links
    not followed: a linked photo or folder keeps the place it has among the inputs."""
    absolute = [Path(os.path.abspath(p)) for p in paths]
    try:
        root = Path(os.path.commonpath([p.parent for p in absolute]))
    except ValueError:  # Windows: inputs on several drives
        root = Path(absolute[0].anchor)
    return {p: save_dir / a.relative_to(root) for p, a in zip(paths, absolute)} if paths else {}


class SaveGuard:
    """What `--save-dir` may write: no existing file without --force, never an input image (by
    path or by inode: links, hard links, case-insensitive filesystems), and a file this run
    wrote may be written again."""

    def __init__(self, inputs: list[Path], force: bool) -> None:
        self.inputs = {p.resolve() for p in inputs}
        self.input_files = {key for p in inputs if (key := _file_key(p)) is not None}
        self.force = force
        self.written: set[Path] = set()

    def problem(self, target: Path) -> str | None:
        resolved = target.resolve()
        if resolved in self.inputs or _file_key(target) in self.input_files:
            return f"{target} is an input image: choose a --save-dir where no input is"
        if target.exists() and not self.force and resolved not in self.written:
            return f"{target} exists: pass --force to overwrite it, or choose another --save-dir"
        return None

    def check(self, target: Path, refuse: Callable[[str], object]) -> None:
        if (message := self.problem(target)) is not None:
            refuse(message)


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


class SaveRefused(OSError):
    code = "save_refused"


def _raise_save_refused(message: str) -> None:
    raise SaveRefused(message)


# The suffixes that name each format an annotated copy is written in: the input's own suffix is
# kept when it names the same format (.jpeg, .JPG, .tiff ...), else the first is added.
_SUFFIXES = {"jpeg": (".jpg", ".jpeg", ".jpe"), "png": (".png",), "webp": (".webp",),
             "bmp": (".bmp",), "tiff": (".tif", ".tiff")}


def save_annotated(image: np.ndarray, result: DetectionResult, data: bytes, target: Path,
                   guard: SaveGuard | None = None) -> Path:
    """Draw the boxes and write the image in its input's format (PNG where that format cannot
    hold it); the path written. The guard checks the final name again: a changed suffix may
    name another file."""
    from serving import annotate
    from serving.imaging import read_header

    media_type = read_header(data).media_type
    fmt = annotate.output_format(image, media_type.removeprefix("image/"))
    suffixes = _SUFFIXES.get(fmt, _SUFFIXES["png"])
    if target.suffix.lower() not in suffixes:
        target = target.with_name(target.name + suffixes[0])
    encoded = annotate.encode(annotate.draw(image, result), fmt if fmt in _SUFFIXES else "png")
    if guard is not None:
        guard.check(target, _raise_save_refused)
        guard.written.add(target.resolve())
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(encoded)
    return target
