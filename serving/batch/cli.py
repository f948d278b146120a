"""`weedscan batch`: placeholder until the batch runner lands."""

from __future__ import annotations

import typer


def batch() -> None:
    """Run the detector over folders of images (not implemented yet)."""
    typer.secho("error: weedscan batch is not implemented yet", err=True)
    raise typer.Exit(2)
