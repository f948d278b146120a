"""Lint and types as tests, so README's test command (and .ci/run) enforce them: ruff over the
repository and mypy over serving/, as pyproject's [tool.ruff] and [tool.mypy] configure them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300  # each takes well under a minute; this only stops a hung tool


def run_tool(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[dev]')")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=TIMEOUT_S, check=False)


def test_ruff_finds_nothing() -> None:
    result = run_tool("ruff", "check", "--output-format", "concise", ".")
    if result.returncode != 0:
        pytest.fail(f"ruff check . found problems:\n{result.stdout}{result.stderr}", pytrace=False)


def test_mypy_finds_nothing_in_serving() -> None:
    result = run_tool("mypy")  # the files of [tool.mypy]
    if result.returncode != 0:
        pytest.fail(f"mypy found problems:\n{result.stdout}{result.stderr}", pytrace=False)


# Path.read_text / write_text / open, which ruff's PLW1514 does not check (it sees open() only).
PATH_TEXT_METHODS = {"read_text", "write_text", "open"}
NOT_PATHS = {"os", "io", "gzip", "bz2", "lzma", "zipfile", "tarfile", "Image", "webbrowser", "sys"}
SOURCE_FOLDERS = ("serving", "training", "weedscan_cli", "benchmarks", "tests", "tools")


def text_calls_without_encoding(source: str) -> list[int]:
    """Lines of `x.read_text()`, `x.write_text(...)` and `x.open(...)` in text mode that name no
    encoding. `x.open(name)` with a variable first argument is someone else's open (a zip's...)."""
    import ast

    lines = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in PATH_TEXT_METHODS):
            continue
        if isinstance(node.func.value, ast.Name) and node.func.value.id in NOT_PATHS:
            continue
        if any(keyword.arg == "encoding" for keyword in node.keywords):
            continue
        if node.func.attr == "read_text" and node.args:  # read_text("utf-8"): named by position
            continue
        if node.func.attr == "open":
            first = node.args[0] if node.args else None
            mode = next((k.value for k in node.keywords if k.arg == "mode"), first)
            if first is not None and not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            if isinstance(mode, ast.Constant) and "b" in str(mode.value):
                continue
        lines.append(node.lineno)
    return lines


def test_text_files_name_their_encoding() -> None:
    """The process locale is no default: OpenVINO switches it to "C" (ASCII) while it compiles."""
    found = [f"{path.relative_to(REPO)}:{line}"
             for folder in SOURCE_FOLDERS for path in sorted((REPO / folder).rglob("*.py"))
             for line in text_calls_without_encoding(path.read_text(encoding="utf-8"))]
    assert found == [], "text files opened without encoding=:\n" + "\n".join(found)


def test_the_encoding_check_sees_each_form() -> None:
    source = ('p.read_text()\np.write_text("x")\np.open("w")\np.open()\n'
              'p.read_text(encoding="utf-8")\np.open("rb")\nzipped.open(name)\nos.open(x, 1)\n'
              'p.read_text("utf-8")\n')
    assert text_calls_without_encoding(source) == [1, 2, 3, 4]
