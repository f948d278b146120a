"""The trainer's commands: data, train, finetune, export, eval, precision, quantize.

The `weedscan` root (weedscan_cli) mounts them lazily, importing this module only when one of
them runs; they import Ultralytics only when they run. `python -m training.cli` is `weedscan`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, get_args

import typer

from serving.cli_options import fail
from serving.engines.choose import EngineRequest, PrecisionRequest
from training.data_cli import data_app, parse_repeats

app = typer.Typer(name="weedscan", help="The trainer's commands (weedscan_cli mounts them).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(data_app, name="data")

EVAL_RUNS = Path("runs/eval")  # where eval reports go by default: under runs/, beside training's
PRECISION_CHECKS_HELP = ("also score each engine and precision this CPU offers on the val splits into the "
                         "card (`weedscan precision`), so the server's auto may use those that kept accuracy")


@app.command()
def train(
    data: Annotated[list[Path], typer.Option(
        "--data", help="YOLO data YAML (or its folder); repeat for several datasets")] = [],
    model: Annotated[str, typer.Option(
        help="architecture YAML: trained from scratch, or the one --weights fit")] = "yolo26n.yaml",
    weights: Annotated[Path | None, typer.Option(
        help="starting weights: a local .pt, or an Ultralytics ONNX export (fp32 or int8), e.g. "
             "../shared/pretrained/yolov8n-coco-int8.onnx")] = None,
    imgsz: Annotated[int, typer.Option(min=32, help="training image size")] = 416,
    epochs: Annotated[int, typer.Option(min=1, help="epochs (ignored when --time is set)")] = 100,
    time: Annotated[float | None, typer.Option(min=0.001, help="time budget in hours")] = None,
    batch: Annotated[int, typer.Option(min=1, help="images per training batch")] = 16,
    device: Annotated[str, typer.Option(help="cpu, 0, 0,1 ...")] = "cpu",
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    warmup_epochs: Annotated[float, typer.Option(
        min=0, help="LR warm-up epochs (shorten for a brief fine-tune)")] = 3.0,
    close_mosaic: Annotated[int, typer.Option(min=0, help="last epochs trained without mosaic")] = 5,
    repeat: Annotated[list[str], typer.Option(help="oversample a small dataset: NAME=COUNT (e.g. cwfid=8)")] = [],
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads on CPU")] = None,
    bf16: Annotated[bool | None, typer.Option(
        "--bf16/--no-bf16", help="bf16 autocast on CPU (default: only with native bf16)")] = None,
    project: Annotated[Path, typer.Option(help="folder for runs")] = Path("runs/train"),
    name: Annotated[str, typer.Option(
        help="run name: a new folder under --project (NAME-2 ... if taken)")] = "weedscan",
    resume: Annotated[Path | None, typer.Option(help="carry on an interrupted run from its last.pt")] = None,
    plots: Annotated[bool, typer.Option(
        "--plots/--no-plots", help="write Ultralytics' PNG plots (labels, curves, results) into the run")] = True,
) -> None:
    """Train a detector with Ultralytics, offline, with field-photo augmentations.

    Example: weedscan train --data ../shared/data/sesame --data ../shared/data/cwfid
    --repeat cwfid=8 --model yolov8n.yaml --imgsz 320 --time 2
    """
    from training.train import TrainConfig
    from training.train import resume as resume_run
    from training.train import train as run_training
    from training.trainset import DatasetError

    if resume is not None:
        if not resume.is_file():
            fail(f"checkpoint not found: {resume}")
        best = resume_run(resume, bf16, threads)  # None: as the run was started
    else:
        if not data:
            fail("give at least one --data YAML (or --resume LAST.pt)")
        if weights is not None and not weights.is_file():
            fail(f"weights not found: {weights}")
        config = TrainConfig(data=[str(d) for d in data], model=model,
                             weights=str(weights) if weights else None, imgsz=imgsz, epochs=epochs,
                             time=time, batch=batch, device=device, seed=seed,
                             warmup_epochs=warmup_epochs, close_mosaic=close_mosaic,
                             repeats=parse_repeats(repeat), threads=threads, bf16=bf16,
                             project=str(project), name=name, plots=plots)
        try:
            best = run_training(config)
        except DatasetError as exc:
            fail(str(exc))
    typer.echo(f"best weights: {best}")


@app.command()
def finetune(
    data: Annotated[list[Path], typer.Option(
        "--data", help="the field's YOLO folder (images/train, labels/train, data.yaml; a val split is used as the "
                       "gate) or its data YAML; repeat for several")] = [],
    base: Annotated[Path, typer.Option(
        help="the served ONNX model to start from (with its card)")] = Path("models/weedscan.onnx"),
    name: Annotated[str, typer.Option(help="the candidate's name: DIR/NAME.onnx + NAME.json")] = "",
    models_dir: Annotated[Path, typer.Option(help="where the candidate is written")] = Path("models"),
    time: Annotated[float | None, typer.Option(
        min=0.01, help="hours for the whole job (training, export, scoring)")] = 0.33,
    imgsz: Annotated[int | None, typer.Option(
        min=64, help="training and model input size (default: the base's input, or the photos' long side where "
                     "smaller)")] = None,
    replay: Annotated[bool, typer.Option(
        "--replay/--no-replay", help="train beside a sample of the base's public training sets, where present, so it "
                                     "keeps what it knew")] = True,
    replay_data: Annotated[list[Path], typer.Option(
        help="a public YOLO set to replay (default: the base card's training data found in $WEEDSCAN_PUBLIC_DATA_DIRS "
             "or the data cache)")] = [],
    lr0: Annotated[float | None, typer.Option(min=1e-6, help="initial learning rate (default: the recipe's)")] = None,
    freeze: Annotated[int | None, typer.Option(
        min=0, help="first N layers kept frozen (default: the recipe's)")] = None,
    seed: Annotated[int, typer.Option(help="random seed (gate photos, replay sample, training)")] = 0,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads on CPU")] = None,
    project: Annotated[Path, typer.Option(help="folder for the job's run")] = Path("runs/finetune"),
    force: Annotated[bool, typer.Option(help="replace an existing DIR/NAME.onnx")] = False,
    promote: Annotated[bool, typer.Option(
        "--promote-if-better",
        help="make the candidate the folder's active model when the gate says it is better")] = False,
) -> None:
    """Teach a model one field from a few labelled photos; the candidate is scored against the base.

    Part of the field's photos (its val split, else at least 2) is kept out of training; base and
    candidate are scored on them and on the replayed public val splits, and the comparison goes
    into the candidate's card. The candidate does not serve until you make it active.

    Example: weedscan finetune --data my_field --base models/weedscan.onnx --name my_field
    --models-dir models --time 0.33
    """
    from serving.errors import ModelCardError
    from training.finetune import FinetuneConfig, FinetuneError, Recipe, promote_if_better
    from training.finetune import finetune as run_finetune

    if not data:
        fail("give the field's labelled photos with --data DIR")
    if not name:
        fail("give the candidate a --name")
    recipe = Recipe()
    if lr0 is not None:
        recipe.lr0 = lr0
    if freeze is not None:
        recipe.freeze = freeze
    config = FinetuneConfig(data=data, base=base, name=name, models_dir=models_dir, time=time,
                            imgsz=imgsz, replay=replay, replay_data=replay_data or None,
                            recipe=recipe, seed=seed, threads=threads, project=project, force=force)
    try:
        onnx_path, report = run_finetune(config, progress=typer.echo)
    except (FinetuneError, ModelCardError) as exc:
        fail(str(exc))
    for row in report.gate:
        typer.echo(f"{row.role:<6} {row.dataset:<16} mAP50 {row.base.mAP50:.3f} -> {row.candidate.mAP50:.3f}"
                   f"  weed AP50 {row.base.weed_AP50:.3f} -> {row.candidate.weed_AP50:.3f}")
    typer.echo(f"candidate: {onnx_path} ({'better' if report.better else 'not better'}: {report.verdict})")
    if promote and promote_if_better(report, models_dir, name):
        typer.echo(f"{name} is the active model of {models_dir} now")


@app.command("export")
def export_command(
    weights: Annotated[Path, typer.Argument(help="trained weights (.pt)")],
    name: Annotated[str, typer.Option(help="model name: writes MODELS_DIR/NAME.onnx and NAME.json")] = "weedscan",
    data: Annotated[list[Path], typer.Option(
        "--data", help="datasets to evaluate on (default: those it was trained on)")] = [],
    models_dir: Annotated[Path, typer.Option(help="where to write NAME.onnx and NAME.json")] = Path("models"),
    force: Annotated[bool, typer.Option(help="replace an existing NAME.onnx / NAME.json")] = False,
    version: Annotated[str | None, typer.Option(help="model version (default: today's date)")] = None,
    imgsz: Annotated[int | None, typer.Option(help="input size (default: the training size)")] = None,
    compute: Annotated[str | None, typer.Option(help="what the training ran on, for the card")] = None,
    nms_free: Annotated[bool, typer.Option(help="YOLO26/v10: export the NMS-free end-to-end head")] = False,
    input_border: Annotated[int | None, typer.Option(
        min=0, help="grey frame in input pixels kept around each image when served (default: half the stride)")] = None,
    precision_checks: Annotated[bool, typer.Option(help=PRECISION_CHECKS_HELP)] = True,
) -> None:
    """Export weights to ONNX with its model card, after checking ONNX and .pt agree and
    evaluating the ONNX model on the val splits.

    Example: weedscan export runs/train/weedscan/weights/best.pt --name weedscan
    """
    from training.export import ExistingModelError, ParityError, export
    from training.trainset import DatasetError

    if not weights.is_file():
        fail(f"weights not found: {weights}")
    try:
        onnx_path = export(weights, name, [*data] or None, models_dir, version,
                           imgsz, compute, nms_free=nms_free, force=force, input_border=input_border,
                           precision_checks=precision_checks)
    except (ExistingModelError, ParityError, DatasetError) as exc:
        fail(str(exc))
    typer.echo(f"wrote {onnx_path} and {onnx_path.with_suffix('.json')}")


@app.command("eval")
def eval_command(
    model: Annotated[Path, typer.Argument(help="ONNX model with its card beside it")],
    data: Annotated[list[Path], typer.Option("--data", help="YOLO data YAML; repeat for several")],
    split: Annotated[str, typer.Option(help="train, val or test")] = "val",
    report: Annotated[Path | None, typer.Option(
        help="JSON report path (default: runs/eval/MODEL-SPLIT.json, as Ultralytics keeps its runs)")] = None,
    plots: Annotated[bool, typer.Option(
        "--plots", help="also write PR curve and confusion matrix PNGs, in REPORT-plots/ beside the report")] = False,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing report")] = False,
    input_border: Annotated[int | None, typer.Option(
        min=0, help="grey frame in input pixels round each image (default: the card's)")] = None,
    tile: Annotated[str, typer.Option(
        help="tile big images as the server does: auto (its default: photos much larger than the "
             "model input), on or off")] = "auto",
    engine: Annotated[str, typer.Option(help="auto, onnxruntime or openvino: as the server would run it")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16 or int8")] = "auto",
) -> None:
    """Score the ONNX model exactly as it is served: mAP50, mAP50-95, per-class AP, and
    precision/recall at the card's default threshold, per dataset. Big photos are tiled as the
    server tiles them (--tile auto), unless --tile says otherwise.

    Example: weedscan eval models/weedscan.onnx --data ../shared/data/sesame --data ../shared/data/cwfid
    """
    from serving.errors import ModelCardError
    from training.evaluate import evaluate, format_table, write_report
    from training.trainset import DatasetError

    if tile not in ("auto", "on", "off"):
        fail(f"--tile: auto, on or off, not {tile!r}")
    engine_request, precision_request = engine_and_precision(engine, precision)
    if not model.is_file():
        fail(f"model not found: {model}")
    report = report or EVAL_RUNS / f"{model.stem}-{split}.json"
    if report.exists() and not force:  # refused before scoring, not after
        fail(f"{report} exists: pass --force to overwrite it, or --report for another file")
    plots_dir = report.with_name(f"{report.stem}-plots") if plots else None
    try:
        result = evaluate(model, data, split, plots_dir, input_border=input_border,
                          tile=tile,  # type: ignore[arg-type]  # checked above
                          engine=engine_request, precision=precision_request)
    except (ModelCardError, DatasetError, ValueError) as exc:
        fail(str(exc))
    write_report(result, report)
    typer.echo(format_table(result))
    typer.echo(f"report: {report}" + (f", plots: {plots_dir}" if plots_dir else ""))


@app.command("quantize")
def quantize_command(
    model: Annotated[Path, typer.Argument(help="fp32 ONNX model with its card")],
    data: Annotated[list[Path], typer.Option("--data", help="datasets: train split calibrates, val split scores")],
    out: Annotated[Path | None, typer.Option(help="output .onnx (default: NAME-int8.onnx beside the model)")] = None,
    engine: Annotated[str, typer.Option(help=(
        "onnxruntime: an int8 copy of the model (NAME-int8.onnx, a model of its own); openvino: an "
        "int8 variant of the model itself (NAME.openvino-int8.xml/.bin beside it, in its card), made "
        "with NNCF's accuracy control, which the server's auto runs where OpenVINO is installed"))] = "onnxruntime",
    calib: Annotated[int | None, typer.Option(
        min=1, help="calibration images (default: 256; 300 shared between the datasets for openvino)")] = None,
    max_drop: Annotated[float, typer.Option(
        min=0, help="openvino: most mAP50 the variant may lose on any val split")] = 0.01,
    keep_last_convs: Annotated[bool, typer.Option(help="keep the head's last convs in float")] = True,
    ops: Annotated[str, typer.Option(help="all: every operator with an int8 kernel; conv: convolutions only")] = "all",
    method: Annotated[str, typer.Option(help="activation ranges: minmax, percentile or entropy")] = "minmax",
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing output")] = False,
    precision_checks: Annotated[bool, typer.Option(help=PRECISION_CHECKS_HELP)] = True,
) -> None:
    """Make an int8 copy of an ONNX model (static quantization calibrated on training images)
    and score it; ship it only if it holds accuracy and runs faster (benchmarks/bench_int8.py).
    With --engine openvino, make the model's int8 variant instead: NNCF quantizes it for OpenVINO,
    reverting layers to float until no val split loses more than --max-drop mAP50.

    Example: weedscan quantize models/weedscan.onnx --data ../shared/data/sesame --data ../shared/data/cwfid
    """
    from serving.errors import ModelCardError
    from training.quantize import CALIBRATION_METHODS, quantize, require_train_extra
    from training.trainset import DatasetError

    require_train_extra(scoring=True)  # onnx and Ultralytics: say what to install, no traceback
    if not model.is_file():
        fail(f"model not found: {model}")
    if engine == "openvino":
        quantize_variant(model, data, out, calib or 300, max_drop)
        return
    if engine != "onnxruntime":
        fail(f"--engine: onnxruntime or openvino, not {engine!r}")
    calib = calib or 256
    out = out or model.with_name(f"{model.stem}-int8.onnx")
    if ops not in ("all", "conv"):
        fail(f"--ops takes all or conv, got '{ops}'")
    if method not in CALIBRATION_METHODS:
        fail(f"--method takes {', '.join(CALIBRATION_METHODS)}, got '{method}'")
    if out.exists() and not force:
        fail(f"{out} exists: pass --force to overwrite it, or --out for another file")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)  # --out into a folder not made yet
    except OSError as exc:
        fail(f"cannot make the folder for --out {out}: {exc.strerror}")
    try:
        quantize(model, data, out, calib, keep_last_convs, ops=ops, method=method,
                 precision_checks=precision_checks)
    except (ModelCardError, DatasetError) as exc:
        fail(str(exc))
    typer.echo(f"wrote {out} and {out.with_suffix('.json')}")


def quantize_variant(model: Path, data: list[Path], out: Path | None, calib: int, max_drop: float) -> None:
    """`quantize --engine openvino`: the int8 variant beside the model, recorded in its card."""
    from serving.errors import ModelCardError
    from serving.model_card import load_card
    from training.precision import format_checks
    from training.quantize_openvino import quantize_openvino, require_nncf
    from training.trainset import DatasetError

    if out is not None:
        fail("--out is for an int8 copy (--engine onnxruntime); the openvino variant is written "
             "beside the model, as NAME.openvino-int8.xml/.bin")
    require_nncf()
    try:
        variant = quantize_openvino(model, data, calib, max_drop, on_progress=typer.echo)
    except (ModelCardError, DatasetError, ValueError) as exc:
        fail(str(exc))
    card = load_card(model)
    check = card.precision_check("openvino", "int8")
    typer.echo(format_checks([c for c in card.precision_checks if c.engine == "openvino"]))
    verdict = ("the server's auto will run it where OpenVINO is installed" if check and check.validated
               else f"it lost more than {max_drop} mAP50 on a split, so auto will not run it")
    typer.echo(f"wrote {variant.file} and {variant.weights_file} beside {model.name}, in its card: {verdict}")


def engine_and_precision(engine: str, precision: str) -> tuple[EngineRequest, PrecisionRequest]:
    """--engine / --precision checked against what the server accepts."""
    if engine not in get_args(EngineRequest):
        fail(f"--engine: {', '.join(get_args(EngineRequest))}, not {engine!r}")
    if precision not in get_args(PrecisionRequest):
        fail(f"--precision: {', '.join(get_args(PrecisionRequest))}, not {precision!r}")
    return engine, precision  # type: ignore[return-value]  # checked above


@app.command("precision")
def precision_command(
    model: Annotated[Path, typer.Argument(help="ONNX model with its card")],
    data: Annotated[list[Path], typer.Option(
        "--data", help="YOLO data YAML; repeat for several (the model's val splits)")],
    split: Annotated[str, typer.Option(help="train, val or test")] = "val",
    record: Annotated[bool, typer.Option(
        help="write the checks into the model's card (the .onnx is not touched)")] = True,
) -> None:
    """Score the model in each engine and precision this CPU offers, through the serving code,
    against ONNX Runtime in the file's own precision; record it in the card. The server's auto
    uses only a precision that lost at most 0.01 mAP50 on every split.

    Example: weedscan precision models/weedscan.onnx --data ../shared/data/sesame --data ../shared/data/cwfid
    """
    from serving.errors import ModelCardError
    from training.precision import check_precisions, format_checks, record_precisions
    from training.trainset import DatasetError

    if not model.is_file():
        fail(f"model not found: {model}")
    try:
        checks = check_precisions(model, data, split)
    except (ModelCardError, DatasetError, ValueError) as exc:
        fail(str(exc))
    typer.echo(format_checks(checks))
    if record:
        record_precisions(model, checks)
        typer.echo(f"recorded in {model.with_suffix('.json')}")


if __name__ == "__main__":  # the whole CLI, as scripts and older callers run it
    from weedscan_cli import main

    sys.exit(main())
