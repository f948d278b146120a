"""`weedscan serve` and `weedscan detect`: the serving side of the CLI."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer

from serving.config import Settings
from serving.errors import ClientError


def fail(message: str, code: int = 2) -> NoReturn:
    """One clear `error:` line on stderr and a non-zero exit: never a traceback for bad input."""
    typer.secho("error: " + " ".join(message.split()), fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def serve(
    model: Annotated[Optional[Path], typer.Option(
        help="ONNX model (its card NAME.json beside it): the active model at start")] = None,
    models_dir: Annotated[Optional[Path], typer.Option(
        help="folder of models (NAME.onnx + NAME.json), all offered (default models/)")] = None,
    host: Annotated[Optional[str], typer.Option(help="address to bind; 0.0.0.0 opens it to the network")] = None,
    port: Annotated[Optional[int], typer.Option(min=1, max=65535, help="TCP port (default 8000)")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="server processes, for bigger machines")] = None,
    engine: Annotated[Optional[str], typer.Option(
        help="auto|onnxruntime|openvino: what runs the network (auto: fastest validated here)")] = None,
    precision: Annotated[Optional[str], typer.Option(
        help="auto|fp32|bf16|int8 (auto: the fastest whose accuracy the model card validated)")] = None,
) -> None:
    """Start the HTTP service (API v1, web page, metrics) with every model of the models folder.

    The active model answers requests that name none: --model PATH, else the one the folder
    records (POST /v1/models/NAME/activate, weedscan models activate), else weedscan.
    Settings come from WEEDSCAN_* environment variables; options here override them.

    Example: weedscan serve --host 0.0.0.0 --port 8000
    """
    import os
    import time

    import uvicorn

    from serving.api.metrics import worker_metrics_dir
    from serving.api.protocol import PROTOCOL_PATH
    from pydantic import ValidationError

    from serving.engines import choose_engine
    from serving.errors import ModelCardError
    from serving.model_card import load_card
    from serving.models_dir import default_active, model_files

    overrides = {k: v for k, v in {"model": model, "models_dir": models_dir, "host": host,
                                   "port": port, "workers": workers, "engine": engine,
                                   "precision": precision}.items() if v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        fail("; ".join(f"--{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    names = list(model_files(settings.models_dir))
    try:
        if settings.model is not None:
            card = load_card(settings.model)  # refuse a missing model or a sha256 mismatch before starting
            choose_engine(card, settings.engine, settings.precision)  # and an engine it cannot run on
        elif not names:
            fail(f"no model (NAME.onnx with its card NAME.json) in {settings.models_dir}: "
                 "give --models-dir DIR or --model PATH")
    except ModelCardError as exc:
        fail(str(exc))
    active = (settings.model.name if settings.model
              else f"{default_active(settings.models_dir, names)}.onnx")
    # Worker processes build their app from the environment: hand the overrides down.
    for key, value in {**overrides, "serve_started": time.time()}.items():
        os.environ[f"WEEDSCAN_{key.upper()}"] = str(value)
    raise_file_limit(settings.max_connections)
    typer.echo(f"weedscan: serving {active} (active) and the models of {settings.models_dir} on "
               f"http://{settings.host}:{settings.port}/ ({settings.workers} worker(s), "
               f"{settings.inference_threads()} inference threads each)")
    with worker_metrics_dir(settings.workers) as shared:
        if shared:
            typer.echo(f"weedscan: the workers add up their metrics in {shared}")
        # The protocol adds head deadlines, header limits and the connection cap (it reads them
        # from the WEEDSCAN_* environment, in each worker).
        uvicorn.run("serving.api.app:create_app_from_env", factory=True, host=settings.host,
                    port=settings.port, workers=settings.workers, log_level="info",
                    access_log=settings.access_log, timeout_keep_alive=settings.keep_alive_s,
                    proxy_headers=False, server_header=False, http=PROTOCOL_PATH)


def raise_file_limit(connections: int) -> None:
    """Let the process open a socket per allowed connection and the files it needs beside them:
    at the file limit, accept() fails and every new client is reset, /healthz included."""
    import resource

    wanted = connections + 256  # the model, threads' pipes, logs, metric files
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new_soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        if new_soft < wanted:
            typer.secho(f"warning: the open-file limit ({hard}) is below what "
                        f"WEEDSCAN_MAX_CONNECTIONS={connections} needs ({wanted}); lower it or "
                        "raise the limit (ulimit -n)", fg=typer.colors.YELLOW, err=True)


def _help(name: str) -> str:
    """The option's help: its description, range and default in the one definition of the
    detect options."""
    from serving.options import DetectParams

    field = DetectParams.model_fields[name]
    low = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
    high = next((m.le for m in field.metadata if hasattr(m, "le")), None)
    text = field.description or ""
    if low is not None:
        text += f" ({low}-{high})" if high is not None else f" (>= {low})"
    if field.default is not None:
        text += f", default {field.default}"
    return text


# The options the HTTP API takes as query parameters, with the same names (- for _) and checks
# (serving/options.py validates both); detect and batch take all of them.
ConfOption = Annotated[Optional[float], typer.Option(help=_help("conf"))]
IouOption = Annotated[Optional[float], typer.Option(help=_help("iou"))]
ClassesOption = Annotated[Optional[list[str]], typer.Option(
    help="class names, comma-separated or repeated (--classes weed --classes crop)")]
MaxDetOption = Annotated[Optional[int], typer.Option(help=_help("max_det"))]
TileOption = Annotated[Optional[str], typer.Option(help="auto, on or off: " + _help("tile"))]
LanesOption = Annotated[Optional[int], typer.Option(help=_help("lanes"))]
ModeOption = Annotated[str, typer.Option(help="model, or green: no model, every vegetation region "
                                         "is a plant (green-on-brown)")]
VegIndexOption = Annotated[Optional[str], typer.Option(help="mode green: exg, exgr or hsv, default exg")]
VegThresholdOption = Annotated[Optional[str], typer.Option(
    help="mode green: auto (Otsu) or a number, default auto")]
MinAreaOption = Annotated[Optional[int], typer.Option(help=_help("min_area"))]
ModelOption = Annotated[Optional[str], typer.Option(
    help="a model of the models folder by NAME, or an ONNX file's PATH (default: the folder's "
         "active model)")]


def cli_model(value: str | None, settings: Settings) -> Path:
    """`--model NAME|PATH` as a file: a name of the models folder (WEEDSCAN_MODELS_DIR), a path,
    or the folder's active model."""
    from serving.errors import ModelCardError
    from serving.models_dir import resolve_model

    try:
        return resolve_model(value, settings.models_dir)
    except ModelCardError as exc:
        fail(str(exc))


@contextmanager
def _option_errors() -> Iterator[None]:
    """A bad option value fails as one `error: --option: ...` line."""
    from serving.options import OptionError

    try:
        yield
    except OptionError as exc:
        fail(f"--{exc.name.replace('_', '-')}: {exc.message}")


def cli_params(**values: Any) -> Any:
    """The DetectParams of the detect options given (None: not given), checked as the API does."""
    from serving.options import parse_params

    with _option_errors():
        return parse_params(values)


def cli_query(params: Any, lookup: Any) -> Any:
    """The DetectQuery of checked params; `lookup` turns class names into ids (None: mode green,
    where `plant` is the one class)."""
    from serving.detector import lookup_class_ids
    from serving.green import GREEN_CLASSES
    from serving.options import to_query

    with _option_errors():
        return to_query(params, lookup or partial(lookup_class_ids, class_names=GREEN_CLASSES,
                                                  knower="this mode"))


def detect(
    images: Annotated[list[Path], typer.Argument(help="image files or folders (walked recursively)")],
    model: ModelOption = None,
    conf: ConfOption = None,
    iou: IouOption = None,
    classes: ClassesOption = None,
    max_det: MaxDetOption = None,
    tile: TileOption = None,
    lanes: LanesOption = None,
    save_dir: Annotated[Optional[Path], typer.Option(
        help="also write annotated images here, in each input's format and folder layout")] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite annotated images already in "
                                        "--save-dir (never an input image)")] = False,
    mode: ModeOption = "model",
    veg_index: VegIndexOption = None,
    veg_threshold: VegThresholdOption = None,
    min_area: MinAreaOption = None,
) -> None:
    """Detect crops and weeds in image files: one JSON line per image on stdout.

    Takes the HTTP API's options (conf, iou, classes, max-det, tile, lanes, mode ...), same checks.

    Example: weedscan detect field1.jpg survey/ --classes weed --lanes 4 --save-dir out/
             weedscan detect fallow.jpg --mode green --lanes 8
    """
    from serving.green import GreenDetector
    from serving.imaging import decode_image, read_image_file

    settings = Settings()
    model_path = cli_model(model, settings)
    values = dict(conf=conf, iou=iou, classes=classes, max_det=max_det, tile=tile, lanes=lanes,
                  mode=mode, veg_index=veg_index, veg_threshold=veg_threshold, min_area=min_area)
    params = cli_params(**values)  # checked before the model loads
    if params.mode == "green":
        query = cli_query(params, None)
        detector: Any = GreenDetector(query.green)
    else:
        detector = open_detector(model_path, settings.threads)
        query = cli_query(params, detector.class_ids_for)
    paths = expand_inputs(images)
    annotated = annotated_paths(paths, save_dir) if save_dir else {}
    guard = SaveGuard(paths, force) if save_dir else None
    if guard is not None:  # an existing or input file is refused before any work, not halfway
        for target in annotated.values():
            guard.check(target, fail)
    from serving.answer import BatchErrorRecord, DetectLine, wire_json
    from serving.exif_gps import read_gps

    failures = 0
    for path in paths:
        line: dict = {"path": str(path)}
        try:
            data = read_image_file(path, settings.max_upload_bytes)
            image = decode_image(data, settings.max_pixels)
            result = detector.detect(image, query.options)
            line.update(result.to_dict(lanes=query.lanes))
            fix = read_gps(data)
            if fix is not None:
                line["gps"] = {"lat": fix.lat, "lon": fix.lon}
            if save_dir:
                line["annotated"] = str(save_annotated(image, result, data, annotated[path], guard))
            typed: Any = DetectLine.model_validate(line)
        except (OSError, ClientError) as exc:
            failures += 1
            message = exc.message if isinstance(exc, ClientError) else str(exc)
            typed = BatchErrorRecord.model_validate({**line, "error": {
                "code": getattr(exc, "code", "unreadable_file"), "message": message}})
        except Exception as exc:  # noqa: BLE001 - one odd image is one error line, not a traceback
            failures += 1
            typed = BatchErrorRecord.model_validate({"path": str(path), "error": {
                "code": "detect_failed", "message": f"{type(exc).__name__}: {exc}"}})
        sys.stdout.write(wire_json(typed).decode() + "\n")
        sys.stdout.flush()
    if failures:
        raise typer.Exit(1)


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given, folders as the images under them (sorted); an image-less folder fails."""
    from serving.batch.inputs import images_under

    paths: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(images_under(item))
            if not found:
                fail(f"no images found in {item}")
            paths += found
        else:
            paths.append(item)  # a missing or odd file becomes its error line
    return paths


def annotated_paths(paths: list[Path], save_dir: Path) -> dict[Path, Path]:
    """Where each input's annotated copy goes: its path below the inputs' common folder, so
    a/x.jpg and b/x.jpg stay apart (save_dir/a/x.jpg, save_dir/b/x.jpg)."""
    absolute = [p.resolve() for p in paths]
    try:
        root = Path(os.path.commonpath([p.parent for p in absolute]))
    except ValueError:  # Windows: inputs on several drives
        root = Path(absolute[0].anchor)
    return {p: save_dir / a.relative_to(root) for p, a in zip(paths, absolute)} if paths else {}


class SaveGuard:
    """What `--save-dir` may write: no existing file without --force, never an input image (by
    path or by inode: hard links, case-insensitive filesystems), and a file this run wrote may be
    written again (an input given twice)."""

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

    def check(self, target: Path, refuse: Any) -> None:
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


# The extension cv2 writes each decodable format under; the input's own suffix is kept when it
# names the same format (.jpeg, .JPG, .tiff ...).
_FORMAT_SUFFIXES = {"image/jpeg": (".jpg", ".jpeg", ".jpe"), "image/png": (".png",),
                    "image/webp": (".webp",), "image/bmp": (".bmp",), "image/tiff": (".tif", ".tiff")}


def save_annotated(image: Any, result: Any, data: bytes, target: Path,
                   guard: SaveGuard | None = None) -> Path:
    """Draw the boxes and write the image in its input's format; the path written. The guard
    checks the final name again: a changed suffix may name another file."""
    import cv2

    from serving import annotate
    from serving.imaging import read_header

    suffixes = _FORMAT_SUFFIXES.get(read_header(data).media_type, (".png",))
    if target.suffix.lower() not in suffixes:
        target = target.with_name(target.name + suffixes[0])
    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if suffixes[0] == ".jpg" else []
    ok, buffer = cv2.imencode(suffixes[0], annotate.draw(image, result), params)
    if not ok:
        raise OSError(f"could not encode the annotated image as {suffixes[0]}")
    if guard is not None:
        guard.check(target, _raise_save_refused)
        guard.written.add(target.resolve())
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(buffer.tobytes())
    return target


def open_detector(model: Path, threads: int | None) -> Any:
    """The model's Detector; a missing, mismatched or damaged model fails with one line."""
    from serving.detector import Detector

    try:
        settings = Settings()
        return Detector(model, threads=threads, engine=settings.engine, precision=settings.precision)
    except Exception as exc:  # ONNX Runtime raises its own types for a damaged file
        from serving.registry import model_load_error

        fail(model_load_error(model, exc))


def register_serving_commands(app: typer.Typer) -> None:
    """Add the serving commands to the root `weedscan` app."""
    from serving.batch.cli import batch

    from serving.models_cli import models_app

    app.command()(serve)
    app.command()(detect)
    app.command()(batch)
    app.add_typer(models_app, name="models")
