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
    ({"min_area": "x"}, "min_area"), ({"veg_threshold": "nan"}, "veg_threshold"),
    ({"veg_threshold": "inf"}, "veg_threshold"), ({"veg_threshold": "-inf"}, "veg_threshold")])
def test_bad_green_parameters_are_422_naming_them(client: TestClient, params: dict, name: str) -> None:
    r = client.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg"},
                    params={"mode": "green", **params})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_parameter"
    assert r.json()["error"]["message"].startswith(name)


@pytest.mark.parametrize(("params", "name"), [
    ({"veg_index": "exgr"}, "veg_index"), ({"veg_threshold": "0.1"}, "veg_threshold"),
    ({"min_area": 10}, "min_area"), ({"mode": "model", "veg_index": "exg"}, "veg_index")])
def test_green_options_without_mode_green_are_422_not_ignored(client: TestClient, params: dict,
                                                              name: str) -> None:
    for route in ("/v1/detect", "/v1/annotate"):
        r = client.post(route, content=JPEG, headers={"Content-Type": "image/jpeg"}, params=params)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["message"].startswith(f"{name}: only with mode=green"), r.text


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
    assert count(veg_threshold="auto") == count() == 3  # "auto" said out loud: the default


def test_green_mode_over_http(live_server: LiveServer) -> None:
    r = live_server.http.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg"},
                              params={"mode": "green", "veg_index": "exg", "lanes": 4})
    assert r.status_code == 200, r.text
    check_plants(r.json())
    bad = live_server.http.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg"},
                                params={"mode": "green", "veg_threshold": "x"})
    assert bad.status_code == 422 and bad.json()["error"]["message"].startswith("veg_threshold")


def run_detect(*args: str) -> subprocess.CompletedProcess:
    """`weedscan detect` as installed (the console script's module: the serving-only CLI root)."""
    return subprocess.run([sys.executable, "-m", "weedscan_cli", "detect", *args],
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
                      (["--mode", "grey"], "--mode"), (["--min-area", "0"], "min-area"),
                      (["--veg-threshold", "nan"], "--veg-threshold")):
        done = run_detect(str(field), "--mode", "green", *bad)
        assert done.returncode == 2 and name in done.stderr and "Traceback" not in done.stderr, done.stderr
    ignored = run_detect(str(field), "--veg-index", "exgr")  # mode model: a mistake, said so
    assert ignored.returncode == 2 and "--veg-index: only with mode=green" in ignored.stderr, ignored.stderr


# Real photos: sesame val frame agri_0_2159 is cracked bare soil with scattered seedlings.
SOIL_PHOTO = "sesame/images/val/agri_0_2159.jpeg"
BARE_CROPS = ((200, 170), (20, 170), (200, 20))  # 120 px squares with no plant in them
PLANT_CROP = (300, 420)  # holds one seedling


def post_green(client: TestClient, image: np.ndarray, **params: object) -> dict:
    r = client.post("/v1/detect", content=images.encode(image, ".png"),
                    headers={"Content-Type": "image/png"}, params={"mode": "green", **params})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("index", ["exg", "exgr", "hsv"])
def test_real_bare_soil_gives_no_plants_and_a_seedling_one(client: TestClient, shared_data: Path,
                                                           index: str) -> None:
    photo = cv2.imread(str(shared_data / SOIL_PHOTO))
    for x, y in BARE_CROPS:
        answer = post_green(client, photo[y:y + 120, x:x + 120], veg_index=index)
        assert answer["counts"] == {"plant": 0} and answer["weed_cover"] == 0.0, (x, y, answer)
    x, y = PLANT_CROP
    seedling = post_green(client, photo[y:y + 120, x:x + 120], veg_index=index)
    assert seedling["counts"] == {"plant": 1} and seedling["weed_cover"] > 0.005, seedling


def test_real_field_regions_lie_on_the_labelled_plants(client: TestClient, shared_data: Path) -> None:
    """On sesame val photos (every crop and weed labelled), the plant regions' pixels lie in the
    labelled boxes, far above what boxes covering that share of the frame would catch by chance,
    and most labelled plants hold a region."""
    from tests.serving.test_vegetation import label_box_mask

    paths = sorted((shared_data / "sesame" / "images" / "val").glob("*.jpeg"))[:8]
    in_boxes, chance, found = [], [], []
    for path in paths:
        photo = cv2.imread(str(path))
        inside = label_box_mask(path, photo.shape[:2])
        answer = post_green(client, photo)
        assert answer["detections"], path.name
        area = on_labels = 0
        for det in answer["detections"]:
            box = det["box"]
            x1, y1, x2, y2 = int(box["x1"]), int(box["y1"]), int(box["x2"]), int(box["y2"])
            area += det["area"]
            on_labels += det["area"] * (inside[y1:y2, x1:x2].mean() >= 0.5)
        in_boxes.append(on_labels / area)
        chance.append(inside.mean())
        height, width = photo.shape[:2]
        for line in (path.parents[2] / "labels" / "val" / f"{path.stem}.txt").read_text(encoding="utf-8").splitlines():
            _, cx, cy, w, h = (float(v) for v in line.split())
            lx1, lx2 = (cx - w / 2) * width, (cx + w / 2) * width
            ly1, ly2 = (cy - h / 2) * height, (cy + h / 2) * height
            found.append(any(d["box"]["x1"] < lx2 and lx1 < d["box"]["x2"] and d["box"]["y1"] < ly2
                             and ly1 < d["box"]["y2"] for d in answer["detections"]))
    assert np.mean(in_boxes) >= 0.85, in_boxes
    assert np.mean(in_boxes) >= np.mean(chance) + 0.3, (in_boxes, chance)
    assert np.mean(found) >= 0.8, f"{np.mean(found):.2f} of {len(found)} labelled plants hold a region"
