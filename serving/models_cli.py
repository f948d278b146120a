"""`weedscan models list|activate|add|remove`: the models folder a server offers.

The commands change only the folder (serving/models_dir.py, atomic writes); a running server
notices on its next request and follows (serving/registry.py), in every worker process.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from serving.cli_options import fail

if TYPE_CHECKING:  # imported where used: the CLI starts without the API's modules
    from serving.api.schemas import ModelsAnswer

models_app = typer.Typer(
    help="The models a server offers: list them, choose the active one, add or remove one.\n\n"
         "Example: weedscan models activate weedscan-field7",
    no_args_is_help=True)

DirOption = Annotated[Path | None, typer.Option(
    help="models folder (default: WEEDSCAN_MODELS_DIR, else models/)")]


def _dir(models_dir: Path | None) -> Path:
    from serving.config import Settings

    return models_dir or Settings().models_dir


def _checked_listing(folder: Path) -> ModelsAnswer:
    """GET /v1/models' answer for the folder, each model checked (sha256, ONNX session)."""
    from serving.api.schemas import BrokenModel, ListedModel, ModelsAnswer
    from serving.models_dir import check_model, default_active, model_files
    from serving.registry import model_load_error

    files = model_files(folder)
    active = default_active(folder, list(files))
    models: list[ListedModel | BrokenModel] = []
    for name, path in files.items():
        try:
            card = check_model(path)
            if card.name != name:
                raise ValueError(f"its card names the model {card.name!r}")
        except Exception as exc:  # noqa: BLE001 - listed as broken, with the reason
            reason = str(exc) if isinstance(exc, ValueError) else model_load_error(path, exc)
            models.append(BrokenModel(name=name, file=path.name, active=name == active, reason=reason))
            continue
        models.append(ListedModel(**card.model_dump(), state="available", active=name == active,
                                  file=path.name))
    return ModelsAnswer(active=active, models=models)


@models_app.command("list")
def list_models(models_dir: DirOption = None,
                as_json: Annotated[bool, typer.Option("--json", help="GET /v1/models' JSON")] = False,
                ) -> None:
    """List the models of the folder, checked: name, state (available or broken, with the
    reason), version, sha256; the active one is marked with *.

    Example: weedscan models list --json
    """
    from serving.api.schemas import BrokenModel

    folder = _dir(models_dir)
    listing = _checked_listing(folder)
    if as_json:
        typer.echo(listing.model_dump_json(exclude_none=True))
        return
    if not listing.models:
        fail(f"no model in {folder}")
    for entry in listing.models:
        mark = "*" if entry.active else " "
        if isinstance(entry, BrokenModel):
            typer.echo(f"{mark} {entry.name:24} broken     {entry.reason}")
        else:
            typer.echo(f"{mark} {entry.name:24} available  {entry.version:12} {entry.sha256[:12]}  "
                       f"lineage: {len(entry.lineage)} ancestor(s)")


@models_app.command()
def activate(name: Annotated[str, typer.Argument(help="a model of the folder")],
             models_dir: DirOption = None) -> None:
    """Make NAME the active model: servers of this folder swap to it live (loaded and warmed
    first), and keep it across restarts.

    Example: weedscan models activate weedscan-field7
    """
    from serving.models_dir import check_model, check_name, write_active

    folder = _dir(models_dir)
    try:
        check_name(name)
        check_model(folder / f"{name}.onnx")
        write_active(folder, name)
    except Exception as exc:  # noqa: BLE001 - one error line: bad name, broken model, no folder
        from serving.registry import model_load_error

        fail(str(exc) if isinstance(exc, (ValueError, OSError)) else
             model_load_error(folder / f"{name}.onnx", exc))
    typer.echo(f"weedscan: {name} is the active model of {folder}")


@models_app.command()
def add(model: Annotated[Path, typer.Argument(help="MODEL.onnx, its card MODEL.json beside it")],
        name: Annotated[str | None, typer.Option(
            help="its name in the folder (default: the card's)")] = None,
        replace: Annotated[bool, typer.Option("--replace", help="replace a model of that name "
                                              "(never the active one)")] = False,
        models_dir: DirOption = None) -> None:
    """Copy a model and its card into the folder, after checking them (card, sha256, an ONNX
    Runtime session). Written atomically: a server never sees half a file.

    Example: weedscan models add runs/finetune/field7.onnx --name weedscan-field7
    """
    from serving.models_dir import add_model

    folder = _dir(models_dir)
    try:
        target = add_model(folder, model, name, replace)
    except Exception as exc:  # noqa: BLE001
        from serving.registry import model_load_error

        fail(str(exc) if isinstance(exc, (ValueError, OSError)) else model_load_error(model, exc))
    typer.echo(f"weedscan: added {target} (and its card)")


@models_app.command()
def remove(name: Annotated[str, typer.Argument(help="a model of the folder")],
           models_dir: DirOption = None) -> None:
    """Delete a model and its card from the folder; the active model is refused.

    Example: weedscan models remove weedscan-old
    """
    from serving.models_dir import remove_model

    folder = _dir(models_dir)
    try:
        remove_model(folder, name)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    typer.echo(f"weedscan: removed {name} from {folder}")
