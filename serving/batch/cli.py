"""`weedscan batch`: a whole survey, on all local cores or on a Ray cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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


def batch(
    inputs: Annotated[list[str], typer.Argument(
        metavar="INPUT", help="image folders (walked recursively), globs ('survey/**/*.JPG') or files")],
    out: Annotated[Path, typer.Option("--out", help="output folder; a rerun resumes what it holds")],
    model: ModelOption = None,
    workers: Annotated[int | None, typer.Option(
        min=1, help="worker processes (default: one per core); with --ray: Ray actors (default: cluster CPUs)")] = None,
    ray_address: Annotated[str | None, typer.Option(
        "--ray", metavar="ADDRESS", help="run on a Ray cluster ('auto', 'ray://HOST:10001') or 'local'; "
        "every node must see the image paths")] = None,
    conf: ConfOption = None,
    iou: IouOption = None,
    classes: ClassesOption = None,
    max_det: MaxDetOption = None,
    tile: TileOption = None,
    lanes: LanesOption = None,
    limit: Annotated[int | None, typer.Option(min=1, help="process at most N new images this run")] = None,
    retry_errors: Annotated[bool, typer.Option(help="rerun images recorded as errors")] = False,
    timing: Annotated[bool, typer.Option(help="keep timing_ms in detections.jsonl")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    mode: ModeOption = "model",
    veg_index: VegIndexOption = None,
    veg_threshold: VegThresholdOption = None,
    min_area: MinAreaOption = None,
) -> None:
    """Detect crops and weeds in every image of a survey; a rerun resumes where the last stopped.

    Writes in OUT: detections.jsonl (a detect answer per image), summary.csv, detections.geojson.

    Takes the HTTP API's options (conf, iou, classes, max-det, tile, lanes, mode ...), same checks.

    \b
    Exit status:
      0  done, and no image of this run failed
      1  done, but images of this run failed (error records in the output)
      2  bad usage, or the run could not start (inputs, model, --out)
      3  a worker process died (killed, out of memory): rerun to resume
      4  no space left on the device: free some, rerun to resume

    Example: weedscan batch survey/2026-06-01/ 'extra/*.jpg' --out results/june --workers 4
    """
    from serving.batch.inputs import InputError
    from serving.batch.outputs import NotARecord
    from serving.batch.ray_runner import RayUnavailable
    from serving.batch.runner import BatchCrash, BatchError, run_batch
    from serving.batch.work import BatchJob
    from serving.config import Settings
    from serving.errors import ModelCardError
    from serving.file_pipeline import FileSettings

    params = cli_params(conf=conf, iou=iou, classes=classes, max_det=max_det, tile=tile,
                        lanes=lanes, mode=mode, veg_index=veg_index, veg_threshold=veg_threshold,
                        min_area=min_area)  # checked before the model loads
    settings = Settings()
    model_path = cli_model(model, settings)
    lookup = None
    if params.mode == "model":  # open the model once here: a damaged one fails with one line,
        lookup = open_detector(model_path, 1).class_ids_for  # not in every worker
    query = cli_query(params, lookup)
    files = FileSettings(options=query.options, lanes=query.lanes, max_pixels=settings.max_pixels,
                         max_bytes=settings.max_upload_bytes, timing=timing)
    job = BatchJob(model=str(model_path), files=files, threads=settings.threads, green=query.green)
    try:
        report = run_batch(inputs, out, job, workers=workers, ray_address=ray_address,
                           limit=limit, retry_errors=retry_errors, progress=progress)
    except BatchCrash as exc:
        fail(str(exc), exc.exit_code)
    except (InputError, BatchError, NotARecord, ModelCardError, RayUnavailable,
            ConnectionError) as exc:
        fail(str(exc))
    typer.echo(f"weedscan batch: {report.summary()}", err=True)
    if report.new_errors:
        raise typer.Exit(1)
