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
