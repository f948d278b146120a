"""Shared fixtures: the shipped model, real images from ../shared when present."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
SHIPPED_MODEL = REPO / "models" / "weedscan.onnx"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "sesame" / "data.yaml").is_file():
        pytest.skip(f"public datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    assert SHIPPED_MODEL.is_file(), f"the shipped model {SHIPPED_MODEL} is missing"
    return SHIPPED_MODEL


@pytest.fixture(scope="session")
def detector(shipped_model: Path):  # noqa: ANN201
    from serving.detector import Detector

    return Detector(shipped_model, threads=2)
