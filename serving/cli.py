"""`weedscan serve` and `weedscan detect`: the serving side of the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from serving.config import Settings


def fail(message: str, code: int = 2) -> None:
    """One clear `error:` line on stderr and a non-zero exit: never a traceback for bad input."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def serve(
    model: Annotated[Optional[Path], typer.Option(help="ONNX model (its card NAME.json beside it)")] = None,
    host: Annotated[Optional[str], typer.Option(help="address to bind; 0.0.0.0 opens it to the network")] = None,
    port: Annotated[Optional[int], typer.Option(min=1, max=65535)] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="server processes, for bigger machines")] = None,
) -> None:
    """Start the HTTP service (API v1, web page, metrics) with the shipped model.

    Settings come from WEEDSCAN_* environment variables; options here override them.

    Example: weedscan serve --host 0.0.0.0 --port 8000
    """
    import os

    import uvicorn

    from serving.api.metrics import worker_metrics_dir
    from serving.api.protocol import PROTOCOL_PATH
    from serving.errors import ModelCardError
    from serving.model_card import load_card

    overrides = {k: v for k, v in {"model": model, "host": host, "port": port,
                                   "workers": workers}.items() if v is not None}
    settings = Settings(**overrides)
    try:
        load_card(settings.model)  # refuse a missing model or a sha256 mismatch before starting
    except ModelCardError as exc:
        fail(str(exc))
    # Worker processes build their app from the environment: hand the overrides down.
    for key, value in overrides.items():
        os.environ[f"WEEDSCAN_{key.upper()}"] = str(value)
    raise_file_limit(settings.max_connections)
    typer.echo(f"weedscan: serving {settings.model.name} on http://{settings.host}:{settings.port}/ "
               f"({settings.workers} worker(s), {settings.inference_threads()} inference threads each)")
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


def detect(
    images: Annotated[list[Path], typer.Argument(help="image files")],
    model: Annotated[Optional[Path], typer.Option(help="ONNX model (default: the shipped one)")] = None,
    conf: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="minimum confidence")] = None,
    iou: Annotated[Optional[float], typer.Option(min=0.0, max=1.0)] = None,
    tile: Annotated[str, typer.Option(help="auto, on or off")] = "auto",
    lanes: Annotated[Optional[int], typer.Option(min=1, max=64, help="sprayer lanes")] = None,
    save_dir: Annotated[Optional[Path], typer.Option(help="also write annotated images here")] = None,
    mode: Annotated[str, typer.Option(help="model, or green: no model, every vegetation region "
                                      "is a plant (green-on-brown)")] = "model",
    veg_index: Annotated[str, typer.Option(help="mode green: exg, exgr or hsv")] = "exg",
    veg_threshold: Annotated[str, typer.Option(help="mode green: auto (Otsu) or a number")] = "auto",
    min_area: Annotated[int, typer.Option(min=1, help="mode green: smallest plant, pixels")] = 50,
) -> None:
    """Detect crops and weeds in image files: one JSON line per image on stdout.

    Example: weedscan detect field1.jpg field2.png --save-dir out/
             weedscan detect fallow.jpg --mode green --lanes 8
    """
    from serving import annotate
    from serving.detector import TILE_MODES, DetectOptions
    from serving.errors import ClientError
    from serving.imaging import decode_image

    if tile not in TILE_MODES:
        fail(f"--tile must be one of {', '.join(TILE_MODES)}")
    if mode not in ("model", "green"):
        fail("--mode must be model or green")
    settings = Settings(**({"model": model} if model else {}))
    detector: Any
    if mode == "green":
        detector = green_detector(veg_index, veg_threshold, min_area)
    else:
        detector = open_detector(settings.model, settings.threads)
    if save_dir:
        save_dir.mkdir(parents=True, exist_ok=True)
    options = DetectOptions(conf=conf, iou=iou, tile=tile)
    failures = 0
    for path in images:
        line: dict = {"path": str(path)}
        try:
            image = decode_image(path.read_bytes(), settings.max_pixels)
            result = detector.detect(image, options)
            line.update(result.to_dict(lanes=lanes))
            if save_dir:
                out = save_dir / f"{path.stem}.jpg"
                out.write_bytes(annotate.encode(annotate.draw(image, result)))
                line["annotated"] = str(out)
        except (OSError, ClientError) as exc:
            failures += 1
            message = exc.message if isinstance(exc, ClientError) else str(exc)
            line["error"] = {"code": getattr(exc, "code", "unreadable_file"), "message": message}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
    if failures:
        raise typer.Exit(1)


def open_detector(model: Path, threads: int | None) -> Any:
    """The model's Detector; a missing, mismatched or damaged model fails with one line."""
    from serving.detector import Detector

    try:
        return Detector(model, threads=threads)
    except Exception as exc:  # ONNX Runtime raises its own types for a damaged file
        from serving.api.service import model_load_error

        fail(model_load_error(model, exc))


def green_options(veg_index: str, veg_threshold: str, min_area: int) -> Any:
    """The VegetationOptions of --veg-index, --veg-threshold, --min-area; bad values fail."""
    from serving.vegetation import VegetationOptions

    try:
        threshold: Any = veg_threshold if veg_threshold == "auto" else float(veg_threshold)
    except ValueError:
        fail(f"--veg-threshold must be auto or a number, not {veg_threshold!r}")
    try:
        options = VegetationOptions(veg_index, threshold, min_area)  # type: ignore[arg-type]
    except ValueError as exc:
        fail(f"--veg-{exc}" if str(exc).startswith("index") else str(exc))
    return options


def green_detector(veg_index: str, veg_threshold: str, min_area: int) -> Any:
    """The detector stand-in for --mode green; bad values fail."""
    from serving.green import GreenDetector

    return GreenDetector(green_options(veg_index, veg_threshold, min_area))


def register_serving_commands(app: typer.Typer) -> None:
    """Add the serving commands to the root `weedscan` app."""
    from serving.batch.cli import batch

    app.command()(serve)
    app.command()(detect)
    app.command()(batch)
