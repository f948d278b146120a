"""The command line's layers: each command lives in its own module, what they share lives in
serving/cli_options.py (no command, no HTTP layer), and only the root (weedscan_cli) gathers the
commands, so no module imports a command module and no import circle runs through the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMAND_MODULES = {"serving.serve_cli", "serving.detect_cli", "serving.batch.cli", "serving.models_cli",
                   "training.cli", "training.data_cli"}
TOOLKIT = "serving.cli_options"


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def test_only_the_root_and_the_trainer_app_import_command_modules() -> None:
    allowed = {"weedscan_cli": COMMAND_MODULES, "training.cli": {"training.data_cli"}}
    for path in [*(REPO / "serving").rglob("*.py"), *(REPO / "training").rglob("*.py")]:
        name = module_name(path)
        wrong = (imports_of(path) & COMMAND_MODULES) - allowed.get(name, set()) - {name}
        assert not wrong, f"{name} imports the command module(s) {sorted(wrong)}"


def test_the_toolkit_holds_no_command_and_no_http_layer() -> None:
    path = REPO / "serving" / "cli_options.py"
    imported = imports_of(path)
    assert not [m for m in imported if m.startswith(("serving.api", "uvicorn", "fastapi"))], imported
    assert not imported & COMMAND_MODULES
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert "app" not in {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
                         for t in node.targets if isinstance(t, ast.Name)}


def test_the_root_registers_every_serving_command() -> None:
    import typer

    from weedscan_cli import app

    names = set(typer.main.get_group(app).commands)
    assert {"serve", "detect", "batch", "models"} <= names
