"""conf and iou are fractions: what is no finite number (nan, inf, text) is told so, the same
way by the API and the CLI; a number out of range keeps the range check's message."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests import images

FRACTION = "Input should be a number between 0 and 1"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "abc"])
@pytest.mark.parametrize("name", ["conf", "iou"])
def test_the_api_says_a_fraction_is_a_number_between_0_and_1(client: TestClient, name: str,
                                                             value: str) -> None:
    answer = client.post(f"/v1/detect?{name}={value}", content=images.encode(images.field_like(64, 48)),
                         headers={"Content-Type": "image/jpeg"})
    assert answer.status_code == 422
    assert answer.json()["error"] == {"code": "invalid_parameter", "message": f"{name}: {FRACTION}"}


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_the_cli_says_a_fraction_is_a_number_between_0_and_1(tmp_path: Path, shipped_model: Path,
                                                             value: str) -> None:
    from weedscan_cli import app

    image = tmp_path / "a.jpg"
    image.write_bytes(images.encode(images.field_like(64, 48)))
    for command in (["detect", str(image)], ["batch", str(image), "--out", str(tmp_path / "out")]):
        result = CliRunner().invoke(app, [*command, "--model", str(shipped_model), "--conf", value])
        assert result.exit_code == 2, result.output
        assert result.stderr.strip() == f"error: --conf: {FRACTION} (got {value})"
    out_of_range = CliRunner().invoke(app, ["detect", str(image), "--iou", "1.5"])
    assert "error: --iou: Input should be less than or equal to 1" in out_of_range.stderr
