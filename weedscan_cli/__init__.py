"""The `weedscan` command line root: neutral ground between the two sides.

`serving` never imports `training`, and the serving-only install must not need it, so the root
lives in neither: it registers the serving commands (serve, detect, batch, models) directly, each
from its own module (what they share is serving/cli_options.py, no command), and mounts the
trainer's (train, export, eval, precision, quantize, data) as stubs that import `training.cli` only when one
of them runs (`--help` included). `weedscan --help` lists them from the summaries below, which
tests/test_architecture.py checks against the real commands.
"""

from __future__ import annotations

import sys

import typer
from typer.core import TyperCommand, TyperGroup

from serving.batch.cli import batch
from serving.cli_options import fail
from serving.detect_cli import detect
from serving.models_cli import models_app
from serving.serve_cli import serve

# The trainer's commands and how each one's help (training/cli.py) starts.
TRAINER_COMMANDS: dict[str, str] = {
    "data": "Public weed datasets (list the cards, fetch or import, check, merge) and field datasets "
            "(add-field).",
    "train": "Train a detector with Ultralytics, offline, with field-photo augmentations.",
    "finetune": "Teach a model one field from a few labelled photos; the candidate is scored against "
                "the base.",
    "export": "Export weights to ONNX with its model card, after checking ONNX and .pt agree and "
              "evaluating the ONNX model on the val splits.",
    "eval": "Score the ONNX model exactly as it is served: mAP50, mAP50-95, per-class AP, and "
            "precision/recall at the card's default threshold, per dataset.",
    "precision": "Score the model in each engine and precision this CPU offers, through the serving "
                 "code, against ONNX Runtime in the file's own precision; record it in the card.",
    "quantize": "Make an int8 copy of an ONNX model (static quantization calibrated on training "
                "images) and score it; ship it only if it holds accuracy and runs faster "
                "(benchmarks/bench_int8.py).",
}
INSTALL_TRAINER = "pip install -e '.[train]'"

app = typer.Typer(
    name="weedscan",
    help="Find weeds in field images: serve the detector, run it on files, and train, export and "
         "evaluate the model. Runs fully offline.\n\nExample: weedscan serve --port 8000",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Find weeds in field images; every command has --help with an example."""


def trainer_command(name: str) -> TyperCommand | TyperGroup:
    """The real trainer command `name`, importing `training` now (one error line without it)."""
    try:
        from training.cli import app as trainer_app
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("training"):
            raise
        fail(f"weedscan {name} needs the trainer side, which is not installed: {INSTALL_TRAINER}")
    return typer.main.get_group(trainer_app).commands[name]  # type: ignore[return-value]


def _mount(name: str, summary: str) -> None:
    """A stub that hands its arguments (--help too) to the real command, as `weedscan NAME`."""
    settings = {"allow_extra_args": True, "ignore_unknown_options": True}

    @app.command(name, help=summary, add_help_option=False, context_settings=settings)
    def stub(ctx: typer.Context) -> None:
        command = trainer_command(name)
        with command.make_context(name, list(ctx.args), parent=ctx.parent) as sub:
            command.invoke(sub)


app.command()(serve)
app.command()(detect)
app.command()(batch)
app.add_typer(models_app, name="models")
for _name, _summary in TRAINER_COMMANDS.items():
    _mount(_name, _summary)


def main() -> None:
    app(prog_name="weedscan")


if __name__ == "__main__":
    sys.exit(main())
