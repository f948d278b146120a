"""`?vegetation_mask=true`: the answer carries the plant mask its weed cover is measured on,
run-length encoded; from it and the boxes a client (the page) measures the answer's weed_cover,
and the cover at any higher threshold, without uploading the photo again.

The decoding and the cover below are written from the contract (docs/api.md), not with the
server's code, as a browser would write them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.answer import DetectAnswer, ModelRef, VegetationMaskRuns
from serving.detections import Detections
from serving.detector import COVER_OPTIONS, DetectOptions
from serving.imaging import decode_image
from serving.mask_rle import decode_runs, encode_runs
from serving.result import DetectionResult
from serving.vegetation import vegetation_mask
from tests import images
from tests.serving.conftest import LiveServer

RAW = {"Content-Type": "image/jpeg"}
FRAME = images.field_like(640, 480)
JPEG = images.encode(FRAME)
PHONE_SIZE = (3264, 2448)  # a phone photo: the server tiles it
PHONE = images.encode(cv2.resize(images.field_like(816, 612, seed=4), PHONE_SIZE))


def decode(runs: dict[str, Any]) -> np.ndarray:
    """The contract: row-major runs, alternating, the first of 0s, adding up to width x height."""
    width, height = runs["width"], runs["height"]
    flat = np.zeros(width * height, bool)
    position, value = 0, False
    for count in runs["counts"]:
        assert count >= 0
        flat[position:position + count] = value
        position += count
        value = not value
    assert position == width * height
    return flat.reshape(height, width)


def client_cover(answer: dict[str, Any], mask: np.ndarray, threshold: float = 0.0) -> float:
    """Weed cover as a client measures it from the sent mask and the boxes at `threshold`."""
    height, width = mask.shape
    fx, fy = width / answer["image"]["width"], height / answer["image"]["height"]
    weed, crop = np.zeros_like(mask), np.zeros_like(mask)
    for detection in answer["detections"]:
        if detection["confidence"] < threshold:
            continue
        box = detection["box"]
        c0, c1 = max(0, math.floor(box["x1"] * fx + 0.5)), min(width, math.floor(box["x2"] * fx + 0.5))
        r0, r1 = max(0, math.floor(box["y1"] * fy + 0.5)), min(height, math.floor(box["y2"] * fy + 0.5))
        under = weed if detection["class_name"] in ("weed", "plant") else crop
        under[r0:r1, c0:c1] = True
    return float((mask & weed & ~crop).sum()) / mask.size


def detect(http: Any, data: bytes = JPEG, **params: Any) -> dict[str, Any]:
    response = http.post("/v1/detect", content=data, headers=RAW, params=params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("mask", [
    np.zeros((3, 4), bool), np.ones((3, 4), bool), np.eye(5, dtype=bool), np.ones((1, 1), bool),
    np.random.default_rng(0).random((37, 53)) > 0.6])
def test_runs_round_trip(mask: np.ndarray) -> None:
    counts = encode_runs(mask)
    runs = {"width": mask.shape[1], "height": mask.shape[0], "counts": counts}
    assert (decode(runs) == mask).all() and (decode_runs(counts, *mask.shape[::-1]) == mask).all()
    assert counts[0] == (0 if mask.flat[0] else counts[0]) and all(n > 0 for n in counts[1:])
    assert (VegetationMaskRuns.model_validate(runs).pixels() == mask).all()


def test_runs_that_do_not_fill_the_mask_are_refused() -> None:
    with pytest.raises(ValueError):
        VegetationMaskRuns(width=4, height=3, counts=[5, 6])
    with pytest.raises(ValueError):
        VegetationMaskRuns(width=4, height=3, counts=[13, -1])


@pytest.mark.parametrize("x1", [2.46, 2.5, 2.54])
def test_the_cover_is_measured_from_the_boxes_as_sent(x1: float) -> None:
    """A box edge that rounding to 0.1 px moves across a cell boundary (2.46 is sent as 2.5),
    and an edge on a half (2.5: a browser's Math.floor(v + 0.5) rounds it up, not to even)."""
    result = DetectionResult(Detections(np.array([[x1, 0, 10, 10]], np.float32),
                                        np.array([0.9], np.float32), np.array([1])),
                             10, 10, ["crop", "weed"], ModelRef(name="m", version="1", sha256="0"),
                             vegetation=np.ones((10, 10), bool))
    answer = result.to_dict(vegetation_mask=True)
    assert answer["weed_cover"] == client_cover(answer, decode(answer["vegetation_mask"])) == 0.7


def test_the_mask_gives_the_answers_weed_cover(client: TestClient) -> None:
    answer = detect(client, conf=0.01, vegetation_mask="true")
    assert answer["counts"]["weed"] > 0 and answer["weed_cover"] > 0
    DetectAnswer.model_validate(answer)
    mask = decode(answer["vegetation_mask"])
    served = client.app.state.service.detector.detect(decode_image(JPEG, 10**8),
                                                      DetectOptions(conf=0.01, cover="always"))
    assert served.vegetation is not None and (mask == served.vegetation).all()
    assert round(client_cover(answer, mask), 6) == answer["weed_cover"]
    assert "vegetation_mask" not in detect(client, conf=0.01)  # only when asked


def test_the_mask_comes_when_no_weed_box_does(client: TestClient) -> None:
    answer = detect(client, data=PHONE, classes="crop", vegetation_mask="true")
    assert answer["counts"]["weed"] == 0 and answer["weed_cover"] == 0
    mask = decode(answer["vegetation_mask"])
    photo = decode_image(PHONE, 10**8)
    assert (mask == vegetation_mask(photo, COVER_OPTIONS, full_resolution=False).mask).all()
    assert mask.any() and max(mask.shape) <= COVER_OPTIONS.work_side


def test_one_upload_gives_the_cover_at_every_threshold_of_a_phone_photo(client: TestClient) -> None:
    """The page's way: ask once at a low threshold with the mask, filter the boxes itself."""
    low = detect(client, data=PHONE, conf=0.05, vegetation_mask="true")
    assert low["image"] == {"width": PHONE_SIZE[0], "height": PHONE_SIZE[1]}
    mask = decode(low["vegetation_mask"])
    assert round(client_cover(low, mask, 0.05), 6) == low["weed_cover"]
    covers = set()
    for threshold in (0.1, 0.2, 0.3):
        asked = detect(client, data=PHONE, conf=threshold)
        assert round(client_cover(low, mask, threshold), 6) == asked["weed_cover"], threshold
        covers.add(asked["weed_cover"])
    assert len(covers) > 1, "the thresholds must change the cover, or the test proves nothing"


def test_green_mode_sends_the_mask_its_cover_uses(client: TestClient) -> None:
    answer = detect(client, mode="green", vegetation_mask="true")
    mask = decode(answer["vegetation_mask"])
    assert mask.shape == FRAME.shape[:2] and answer["weed_cover"] > 0
    assert round(client_cover(answer, mask), 6) == answer["weed_cover"]


def test_batch_items_carry_the_mask(client: TestClient) -> None:
    files = [("images", ("a.jpg", JPEG, "image/jpeg")), ("images", ("b.jpg", b"nope", "image/jpeg"))]
    response = client.post("/v1/detect/batch", files=files, params={"vegetation_mask": "true",
                                                                     "conf": 0.01})
    first, broken = response.json()["results"]
    assert round(client_cover(first, decode(first["vegetation_mask"])), 6) == first["weed_cover"]
    assert "vegetation_mask" not in broken and broken["error"]["code"] == "undecodable_image"


def test_a_bad_vegetation_mask_value_is_a_422(client: TestClient) -> None:
    response = client.post("/v1/detect", content=JPEG, headers=RAW, params={"vegetation_mask": "maybe"})
    assert response.status_code == 422 and "vegetation_mask" in response.json()["error"]["message"]


def test_the_mask_over_http(live_server: LiveServer) -> None:
    answer = detect(live_server.http, data=PHONE, conf=0.05, vegetation_mask="true")
    mask = decode(answer["vegetation_mask"])
    assert mask.any() and round(client_cover(answer, mask), 6) == answer["weed_cover"]
    no_weed = detect(live_server.http, data=PHONE, classes="crop", vegetation_mask="true")
    assert (decode(no_weed["vegetation_mask"]) == mask).all()


def test_weedscan_detect_writes_the_mask_the_server_sends(client: TestClient, tmp_path: Path,
                                                          shipped_model: Path) -> None:
    from typer.testing import CliRunner

    from weedscan_cli import app

    photo = tmp_path / "phone.jpg"
    photo.write_bytes(PHONE)
    result = CliRunner().invoke(app, ["detect", str(photo), "--model", str(shipped_model),
                                      "--conf", "0.05", "--vegetation-mask"])
    assert result.exit_code == 0, result.output
    line = json.loads(result.output.splitlines()[0])
    served = detect(client, data=PHONE, conf=0.05, vegetation_mask="true")
    assert line["vegetation_mask"] == served["vegetation_mask"]
    assert round(client_cover(line, decode(line["vegetation_mask"])), 6) == line["weed_cover"]
    plain = CliRunner().invoke(app, ["detect", str(photo), "--model", str(shipped_model)])
    assert "vegetation_mask" not in json.loads(plain.output.splitlines()[0])
