"""mode=green (green-on-brown): vegetation regions as `plant` detections, no model, over the
in-process client and a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.green import green_detect
from serving.vegetation import VegetationOptions
from tests import images
from tests.serving.conftest import LiveServer
from tests.serving.test_vegetation import bare_soil

BLOBS = (((100, 100), 30), ((400, 300), 50), ((550, 80), 15), ((600, 400), 3))  # last: ~28 px


def plants_on_soil() -> np.ndarray:
    image = bare_soil()
    for centre, radius in BLOBS:
        cv2.circle(image, centre, radius, (40, 150, 50), -1)
    return image


JPEG = images.encode(plants_on_soil(), ".jpg")
SOIL = images.encode(bare_soil(seed=1), ".jpg")


def boxes_of(answer: dict) -> list[tuple[float, float, float, float]]:
    return sorted((d["box"]["x1"], d["box"]["y1"], d["box"]["x2"], d["box"]["y2"])
                  for d in answer["detections"])


def check_plants(answer: dict) -> None:
    assert answer["counts"] == {"plant": 3}, answer["counts"]  # the 28 px blob is under min_area
    assert answer["model"]["name"] == "green-on-brown"
    expected = sorted((cx - r, cy - r, cx + r + 1, cy + r + 1) for (cx, cy), r in BLOBS[:3])
    for got, want in zip(boxes_of(answer), expected):
        assert got == pytest.approx(want, abs=4)
    for det in answer["detections"]:
        assert det["class_name"] == "plant" and 0 < det["confidence"] <= 1
        side = det["box"]["x2"] - det["box"]["x1"]
        assert det["area"] == pytest.approx(np.pi * (side / 2) ** 2, rel=0.15)
    disc_area = sum(np.pi * r * r for _, r in BLOBS[:3]) / (640 * 480)
    assert answer["weed_cover"] == pytest.approx(disc_area, rel=0.1)


def test_green_detect_finds_the_plants() -> None:
    result = green_detect(plants_on_soil(), VegetationOptions(min_area=50))
    check_plants(result.to_dict())
    assert result.to_dict(lanes=4)["lanes"] == [True, False, True, True]  # x 70-130, 350-450, 535-565


def test_green_mode_over_the_client(client: TestClient) -> None:
    r = client.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg"},
                    params={"mode": "green", "lanes": 4})
    assert r.status_code == 200, r.text
    check_plants(r.json())
    assert r.json()["lanes"] == [True, False, True, True]
    soil = client.post("/v1/detect", content=SOIL, headers={"Content-Type": "image/jpeg"},
                       params={"mode": "green"}).json()
    assert soil["counts"] == {"plant": 0} and soil["weed_cover"] == 0.0
    batch = client.post("/v1/detect/batch", params={"mode": "green"},
                        files=[("images", ("a.jpg", JPEG, "image/jpeg")),
                               ("images", ("b.jpg", SOIL, "image/jpeg"))]).json()["results"]
    check_plants(batch[0])
    assert batch[1]["counts"] == {"plant": 0}
    drawn = client.post("/v1/annotate", content=JPEG, headers={"Content-Type": "image/jpeg"},
                        params={"mode": "green", "format": "png"})
    assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/png"
    model = client.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg"}).json()
    assert "plant" not in model["counts"]  # mode=model is the default


@pytest.mark.parametrize(("params", "name"), [
    ({"mode": "grey"}, "mode"), ({"veg_index": "ndvi"}, "veg_index"),
    ({"veg_threshold": "high"}, "veg_threshold"), ({"min_area": 0}, "min_area"),
    ({"min_area": "x"}, "min_area")])
def test_bad_green_parameters_are_422_naming_them(client: TestClient, params: dict, name: str) -> None:
    r = client.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg"},
                    params={"mode": "green", **params})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_parameter"
    assert r.json()["error"]["message"].startswith(name)


def test_fixed_threshold_and_min_area_change_the_answer(client: TestClient) -> None:
    def count(**params: object) -> int:
        r = client.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg"},
                        params={"mode": "green", **params})
        assert r.status_code == 200, r.text
        return r.json()["counts"]["plant"]
    assert count(min_area=1) == 4
    assert count(min_area=5000) == 1  # only the r=50 disc (~7850 px)
    assert count(veg_threshold=1.9) == 0
    assert count(veg_index="exgr") == 3


def test_green_mode_over_http(live_server: LiveServer) -> None:
    r = live_server.http.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg"},
                              params={"mode": "green", "veg_index": "exg", "lanes": 4})
    assert r.status_code == 200, r.text
    check_plants(r.json())
    bad = live_server.http.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg"},
                                params={"mode": "green", "veg_threshold": "x"})
    assert bad.status_code == 422 and bad.json()["error"]["message"].startswith("veg_threshold")


def run_detect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.cli", "detect", *args],
                          capture_output=True, text=True, timeout=120)


def test_detect_cli_green_mode(tmp_path: Path) -> None:
    field = tmp_path / "field.jpg"
    field.write_bytes(JPEG)
    done = run_detect(str(field), "--mode", "green", "--lanes", "4", "--save-dir", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    check_plants(answer)
    assert answer["lanes"] == [True, False, True, True]
    assert cv2.imread(answer["annotated"]).shape == (480, 640, 3)
    for bad, name in ((["--veg-index", "ndvi"], "--veg-index"), (["--veg-threshold", "x"], "--veg-threshold"),
                      (["--mode", "grey"], "--mode"), (["--min-area", "0"], "min-area")):
        done = run_detect(str(field), "--mode", "green", *bad)
        assert done.returncode == 2 and name in done.stderr and "Traceback" not in done.stderr, done.stderr
