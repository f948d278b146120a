"""`weedscan data`: dataset cards, fetch, import, check and merge."""

from __future__ import annotations

import typer

data_app = typer.Typer(help="Public weed datasets: list the cards, fetch or import, check, merge.",
                       no_args_is_help=True)
