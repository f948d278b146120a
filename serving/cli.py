"""`weedscan serve` and `weedscan detect`: the serving side of the CLI."""

from __future__ import annotations

import typer


def register_serving_commands(app: typer.Typer) -> None:
    """Add the serving commands to the root `weedscan` app."""
