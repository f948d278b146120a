"""What the command modules share: the one-line failure, the detect options (named and checked
as the HTTP API's), and opening the model. No command lives here and nothing here imports the
HTTP layer; serving/detect_cli.py, serving/batch/cli.py, serving/models_cli.py and the trainer's
commands import from it, and weedscan_cli registers the commands.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from serving.config import Settings

if TYPE_CHECKING:
    from serving.detector import Detector
    from serving.options import ClassLookup, DetectParams, DetectQuery


def fail(message: str, code: int = 2) -> NoReturn:
    """One clear `error:` line on stderr and a non-zero exit: never a traceback for bad input."""
    typer.secho("error: " + " ".join(message.split()), fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


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
ConfOption = Annotated[float | None, typer.Option(help=_help("conf"))]
IouOption = Annotated[float | None, typer.Option(help=_help("iou"))]
ClassesOption = Annotated[list[str] | None, typer.Option(
    help="class names, comma-separated or repeated (--classes weed --classes crop)")]
MaxDetOption = Annotated[int | None, typer.Option(help=_help("max_det"))]
TileOption = Annotated[str | None, typer.Option(help="auto, on or off: " + _help("tile"))]
LanesOption = Annotated[int | None, typer.Option(help=_help("lanes"))]
ModeOption = Annotated[str, typer.Option(help="model, or green: no model, every vegetation region "
                                         "is a plant (green-on-brown)")]
VegIndexOption = Annotated[str | None, typer.Option(help="mode green: exg, exgr or hsv, default exg")]
VegThresholdOption = Annotated[str | None, typer.Option(
    help="mode green: auto (Otsu) or a number, default auto")]
MinAreaOption = Annotated[int | None, typer.Option(help=_help("min_area"))]
ModelOption = Annotated[str | None, typer.Option(
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


def cli_params(**values: Any) -> DetectParams:
    """The DetectParams of the detect options given (None: not given), checked as the API does."""
    from serving.options import parse_params

    with _option_errors():
        return parse_params(values)


def cli_query(params: DetectParams, lookup: ClassLookup | None) -> DetectQuery:
    """The DetectQuery of checked params; `lookup` turns class names into ids (None: mode green,
    where `plant` is the one class)."""
    from serving.detector import lookup_class_ids
    from serving.green import GREEN_CLASSES
    from serving.options import to_query

    with _option_errors():
        return to_query(params, lookup or partial(lookup_class_ids, class_names=GREEN_CLASSES,
                                                  knower="this mode"))


def open_detector(model: Path, threads: int | None) -> Detector:
    """The model's Detector; a missing, mismatched or damaged model fails with one line."""
    from serving.detector import Detector

    try:
        settings = Settings()
        return Detector(model, threads=threads, engine=settings.engine, precision=settings.precision)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types for a damaged file
        from serving.registry import model_load_error

        fail(model_load_error(model, exc))
