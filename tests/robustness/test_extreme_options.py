"""Option values and images at the edge of what the arithmetic and the encoders hold: each gets a
4xx in the JSON error shape (or a good answer), never a 500 or a traceback, over a real server
and through the real `weedscan detect` and `weedscan batch`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.serving.conftest import LiveServer
from tests.serving.test_green_mode import JPEG

HUGE_MIN_AREA = "9" * 309  # past any float: int -> float comparisons overflow
OUT_OF_RANGE = [({"veg_threshold": "-1e39"}, "veg_threshold"),  # -inf as float32: NaN scores
                ({"veg_threshold": "1e39"}, "veg_threshold"),
                ({"min_area": HUGE_MIN_AREA}, "min_area")]


def sliver_png(width: int = 65_501, height: int = 2) -> bytes:
    """An image wider than JPEG can encode (65,500 px a side), with a green stroke on soil."""
    image = np.full((height, width, 3), (60, 90, 120), np.uint8)
    image[:, 1000:3000] = (40, 150, 50)
    return cv2.imencode(".png", image)[1].tobytes()


@pytest.mark.parametrize(("params", "name"), OUT_OF_RANGE)
def test_green_options_out_of_range_are_422(live: LiveServer, params: dict, name: str) -> None:
    response = httpx.post(f"{live.url}/v1/detect", params={"mode": "green", **params},
                          content=JPEG, headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter" and name in error["message"]


@pytest.mark.parametrize("params", [{"mode": "green"}, {}, {"format": "jpeg"}])
def test_annotate_beyond_jpeg_side_answers_png(live: LiveServer, params: dict) -> None:
    """JPEG cannot hold a side over 65,500 px: the annotated image comes back as PNG."""
    response = httpx.post(f"{live.url}/v1/annotate", params=params, content=sliver_png(),
                          headers={"Content-Type": "image/png"}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    drawn = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape[:2] == (2, 65_501)


def test_green_mode_on_a_sliver_finds_the_plant(live: LiveServer) -> None:
    response = httpx.post(f"{live.url}/v1/detect", params={"mode": "green", "min_area": 1},
                          content=sliver_png(), headers={"Content-Type": "image/png"}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["counts"]["plant"] >= 1


def _cli(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "weedscan_cli", *(str(a) for a in args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(("option", "value"), [("--veg-threshold", "-1e39"),
                                               ("--min-area", HUGE_MIN_AREA)])
def test_cli_detect_and_batch_refuse_out_of_range_options(tmp_path: Path, option: str,
                                                          value: str) -> None:
    image = tmp_path / "a.jpg"
    image.write_bytes(JPEG)
    for args in (["detect", image], ["batch", image, "--out", tmp_path / "out", "--no-progress"]):
        run = _cli(*args, "--mode", "green", option, value)
        assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
        assert "Traceback" not in run.stderr, run.stderr
        errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and option in errors[0], run.stderr


def test_cli_batch_and_detect_on_slivers_answer_every_image(tmp_path: Path) -> None:
    """A sliver beside a good image: each gets its line, and the run ends normally."""
    survey = tmp_path / "survey"
    survey.mkdir()
    (survey / "a.jpg").write_bytes(JPEG)
    (survey / "sliver.png").write_bytes(sliver_png())
    out = tmp_path / "out"
    run = _cli("batch", survey, "--out", out, "--mode", "green", "--workers", "1", "--no-progress")
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    records = [json.loads(line) for line in (out / "detections.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [Path(r["path"]).name for r in records] == ["a.jpg", "sliver.png"]
    assert all("error" not in r for r in records), records
    detect = _cli("detect", survey / "sliver.png", "--mode", "green", "--save-dir", tmp_path / "drawn")
    assert detect.returncode == 0, detect.stderr
    assert "Traceback" not in detect.stderr
