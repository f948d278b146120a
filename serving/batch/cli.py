"""`weedscan batch`: a whole survey, on all local cores or on a Ray cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from serving.cli import fail, green_options, open_detector


def batch(
    inputs: Annotated[list[str], typer.Argument(
        metavar="INPUT", help="image folders (walked recursively), globs ('survey/**/*.JPG') or files")],
    out: Annotated[Path, typer.Option("--out", help="output folder; a rerun resumes what it holds")],
    model: Annotated[Optional[Path], typer.Option(help="ONNX model (default: the shipped one)")] = None,
    workers: Annotated[Optional[int], typer.Option(
        min=1, help="worker processes (default: one per core); with --ray: Ray actors (default: cluster CPUs)")] = None,
    ray_address: Annotated[Optional[str], typer.Option(
        "--ray", metavar="ADDRESS", help="run on a Ray cluster ('auto', 'ray://HOST:10001') or 'local'; "
        "every node must see the image paths")] = None,
    tile: Annotated[str, typer.Option(help="auto, on or off: cut big photos into tiles")] = "auto",
    limit: Annotated[Optional[int], typer.Option(min=1, help="process at most N new images this run")] = None,
    retry_errors: Annotated[bool, typer.Option(help="rerun images recorded as errors")] = False,
    timing: Annotated[bool, typer.Option(help="keep timing_ms in detections.jsonl")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    mode: Annotated[str, typer.Option(help="model, or green: no model, every vegetation region "
                                      "is a plant (green-on-brown)")] = "model",
    veg_index: Annotated[str, typer.Option(help="mode green: exg, exgr or hsv")] = "exg",
    veg_threshold: Annotated[str, typer.Option(help="mode green: auto (Otsu) or a number")] = "auto",
    min_area: Annotated[int, typer.Option(min=1, help="mode green: smallest plant, pixels")] = 50,
) -> None:
    """Detect crops and weeds in every image of a survey; a rerun resumes where the last stopped.

    Writes in OUT: detections.jsonl (a detect answer per image), summary.csv, detections.geojson.

    Exit status: 0 done, 1 done but some images failed, 2 bad usage.

    Example: weedscan batch survey/2026-06-01/ 'extra/*.jpg' --out results/june --workers 4
    """
    from serving.batch.inputs import InputError
    from serving.batch.ray_runner import RayUnavailable
    from serving.batch.runner import BatchError, run_batch
    from serving.batch.work import BatchJob
    from serving.config import Settings
    from serving.detector import TILE_MODES
    from serving.errors import ModelCardError

    if tile not in TILE_MODES:
        fail(f"--tile must be one of {', '.join(TILE_MODES)}")
    if mode not in ("model", "green"):
        fail("--mode must be model or green")
    green = green_options(veg_index, veg_threshold, min_area) if mode == "green" else None
    settings = Settings(**({"model": model} if model else {}))
    if green is None:  # open the model once here: a damaged one fails with one line, not in
        open_detector(settings.model, 1)  # every worker with a traceback
    job = BatchJob(model=str(settings.model), threads=settings.threads,
                   max_pixels=settings.max_pixels, tile=tile, timing=timing, green=green)
    try:
        report = run_batch(inputs, out, job, workers=workers, ray_address=ray_address,
                           limit=limit, retry_errors=retry_errors, progress=progress)
    except (InputError, BatchError, ModelCardError, RayUnavailable, ConnectionError) as exc:
        fail(str(exc))
    typer.echo(f"weedscan batch: {report.processed} image(s) processed, {report.skipped} already done, "
               f"{report.errors} error(s) in {report.records} record(s) -> {report.out_dir}", err=True)
    if report.errors:
        raise typer.Exit(1)
