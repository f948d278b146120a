"""`weedscan serve`: the HTTP service (API v1, web page, metrics) with the models folder's models.
The command that starts the HTTP layer; it imports it only when it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from serving.cli_options import fail
from serving.config import Settings


def serve(
    model: Annotated[Path | None, typer.Option(
        help="ONNX model (its card NAME.json beside it): the active model at start")] = None,
    models_dir: Annotated[Path | None, typer.Option(
        help="folder of models (NAME.onnx + NAME.json), all offered (default models/)")] = None,
    host: Annotated[str | None, typer.Option(help="address to bind; 0.0.0.0 opens it to the network")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="TCP port (default 8000)")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="server processes, for bigger machines")] = None,
    engine: Annotated[str | None, typer.Option(
        help="auto|onnxruntime|openvino: what runs the network (auto: fastest validated here)")] = None,
    precision: Annotated[str | None, typer.Option(
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
    from pydantic import ValidationError

    from serving.api.metrics import worker_metrics_dir
    from serving.api.protocol import PROTOCOL_PATH
    from serving.engines import choose_engine
    from serving.errors import ModelCardError
    from serving.model_card import load_card
    from serving.models_dir import default_active, model_files

    overrides: dict[str, Any] = {k: v for k, v in {"model": model, "models_dir": models_dir, "host": host,
                                   "port": port, "workers": workers, "engine": engine,
                                   "precision": precision}.items() if v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        fail("; ".join(f"--{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    names = list(model_files(settings.models_dir))
    choice = None
    try:
        if settings.model is not None:
            card = load_card(settings.model)  # refuse a missing model or a sha256 mismatch before starting
            # and an engine it cannot run on (a variant's files are looked for, hashed by the server)
            choice = choose_engine(card, settings.engine, settings.precision, model_path=settings.model)
        elif not names:
            fail(f"no model (NAME.onnx with its card NAME.json) in {settings.models_dir}: "
                 "give --models-dir DIR or --model PATH")
    except ModelCardError as exc:
        fail(str(exc))
    active = (settings.model.name if settings.model
              else f"{default_active(settings.models_dir, names)}.onnx")
    if choice is None:  # a models folder: its active model's problems are the registry's to report
        try:
            card = load_card(settings.models_dir / active, verify=False)  # the registry checks the sha256
            choice = choose_engine(card, settings.engine, settings.precision,
                                   model_path=settings.models_dir / active)
        except (ModelCardError, OSError):
            pass
    # Worker processes build their app from the environment: hand the overrides down.
    for key, value in {**overrides, "serve_started": time.time()}.items():
        os.environ[f"WEEDSCAN_{key.upper()}"] = str(value)
    raise_file_limit(settings.max_connections)
    typer.echo(f"weedscan: serving {active} (active) and the models of {settings.models_dir} on "
               f"http://{settings.host}:{settings.port}/ ({settings.workers} worker(s), "
               f"{settings.inference_threads()} inference threads each)")
    if choice is not None:
        typer.echo(f"weedscan: {active} runs on {choice.engine} in {choice.precision} ({choice.reason})")
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
