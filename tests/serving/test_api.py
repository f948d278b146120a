"""API v1 through the in-process client: every route, every error code, auth on and off."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests import images
from tests.serving.conftest import make_client, wait_ready

JPEG = images.encode(images.field_like(640, 480), ".jpg")
PNG = images.encode(images.field_like(640, 480), ".png")


def detect_raw(client: TestClient, data: bytes = JPEG, media: str = "image/jpeg", **params: object):  # noqa: ANN201
    return client.post("/v1/detect", content=data, headers={"Content-Type": media}, params=params)


def assert_error(response, status: int, code: str) -> None:  # noqa: ANN001
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"]


def test_detect_raw_answer_follows_the_contract(client: TestClient, shipped_model: Path) -> None:
    response = detect_raw(client, conf=0.01)
    assert response.status_code == 200
    body = response.json()
    card = json.loads(shipped_model.with_suffix(".json").read_text(encoding="utf-8"))
    assert {k: body["model"][k] for k in ("name", "version", "sha256")} == {
        "name": card["name"], "version": card["version"], "sha256": card["sha256"]}
    assert body["model"]["engine"] in ("onnxruntime", "openvino")
    assert body["model"]["precision"] in ("fp32", "bf16", "int8")
    assert body["image"] == {"width": 640, "height": 480}
    assert set(body["counts"]) == set(card["classes"])
    assert sum(body["counts"].values()) == len(body["detections"])
    assert 0.0 <= body["weed_box_cover"] <= 1.0
    # plants lie in their boxes (slack: the mask counts whole pixels, box cover exact fractions)
    assert 0.0 <= body["weed_cover"] <= body["weed_box_cover"] + 0.01
    assert "lanes" not in body
    assert set(body["timing_ms"]) == {"decode", "preprocess", "inference", "postprocess", "cover", "total"}
    for det in body["detections"]:
        assert det["class_name"] == card["classes"][det["class_id"]]
        box = det["box"]
        assert 0 <= box["x1"] <= box["x2"] <= 640 and 0 <= box["y1"] <= box["y2"] <= 480
        assert 0.01 <= det["confidence"] <= 1


def test_multipart_and_raw_give_the_same_boxes(client: TestClient) -> None:
    raw = detect_raw(client, PNG, "image/png", conf=0.01).json()
    multi = client.post("/v1/detect", files={"image": ("f.png", PNG, "image/png")},
                        params={"conf": 0.01}).json()
    assert raw["detections"] == multi["detections"]


def test_query_parameters(client: TestClient) -> None:
    everything = detect_raw(client, conf=0.001).json()["detections"]
    assert {d["class_name"] for d in everything} == {"crop", "weed"}  # something for each filter
    assert len(detect_raw(client, conf=0.001, max_det=1).json()["detections"]) == min(1, len(everything))
    weeds = detect_raw(client, conf=0.001, classes="weed").json()["detections"]
    assert weeds and all(d["class_name"] == "weed" for d in weeds)
    assert len(weeds) == sum(d["class_name"] == "weed" for d in everything)
    assert len(detect_raw(client, conf=0.99).json()["detections"]) < len(everything)
    lanes = detect_raw(client, conf=0.001, lanes=8).json()["lanes"]
    assert len(lanes) == 8 and all(isinstance(v, bool) for v in lanes)


# Bad detect requests: the corpus in tests/robustness/test_bad_input.py.


def test_upload_over_the_limit_is_413(shipped_model: Path) -> None:
    with make_client(shipped_model, max_upload_mb=1) as small:
        wait_ready(small.get)
        assert_error(detect_raw(small, JPEG + b"\0" * (2 * 1024 * 1024)), 413, "payload_too_large")
        assert detect_raw(small).status_code == 200


def test_multipart_without_the_image_field(client: TestClient) -> None:
    response = client.post("/v1/detect", files={"picture": ("f.jpg", JPEG, "image/jpeg")})
    assert_error(response, 422, "missing_field")
    response = client.post("/v1/detect", data={"image": "not a file"},
                           headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert response.status_code in (400, 422)


def test_batch_keeps_order_and_isolates_a_broken_image(client: TestClient) -> None:
    files = [("images", ("a.jpg", JPEG, "image/jpeg")), ("images", ("b.jpg", b"broken", "image/jpeg")),
             ("images", ("c.png", PNG, "image/png"))]
    response = client.post("/v1/detect/batch", files=files, params={"lanes": 2})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 3
    assert results[0]["image"]["width"] == 640 and len(results[0]["lanes"]) == 2
    assert results[1]["error"]["code"] == "undecodable_image"
    assert results[2]["image"]["width"] == 640
    assert_error(client.post("/v1/detect/batch", content=JPEG,
                             headers={"Content-Type": "image/jpeg"}), 415, "unsupported_media_type")
    assert_error(client.post("/v1/detect/batch", files={"image": ("a.jpg", JPEG, "image/jpeg")}),
                 422, "missing_field")


@pytest.mark.parametrize(("fmt", "media"), [("jpeg", "image/jpeg"), ("png", "image/png")])
def test_annotate_returns_the_drawn_image(client: TestClient, fmt: str, media: str) -> None:
    response = client.post("/v1/annotate", content=JPEG, headers={"Content-Type": "image/jpeg"},
                           params={"format": fmt, "conf": 0.01})
    assert response.status_code == 200 and response.headers["content-type"] == media
    drawn = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == (480, 640, 3)
    assert_error(client.post("/v1/annotate", content=b"x", headers={"Content-Type": "image/jpeg"}),
                 400, "undecodable_image")


def test_models_health_ready_docs(client: TestClient, shipped_model: Path) -> None:
    card = json.loads(shipped_model.with_suffix(".json").read_text(encoding="utf-8"))
    models = client.get("/v1/models").json()["models"]
    assert models[0]["sha256"] == card["sha256"] and models[0]["classes"] == card["classes"]
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/v1/detect", "/v1/detect/batch", "/v1/annotate", "/v1/models"} <= set(spec["paths"])
    assert "image/jpeg" in spec["paths"]["/v1/detect"]["post"]["requestBody"]["content"]
    assert client.get("/").status_code == 200
    assert_error(client.get("/nowhere"), 404, "not_found")
    assert_error(client.get("/v1/detect"), 405, "method_not_allowed")


def test_metrics_count_requests_and_inference(client: TestClient) -> None:
    detect_raw(client)
    detect_raw(client, b"", "image/jpeg")
    text = client.get("/metrics").text
    assert 'weedscan_requests_total{method="POST",route="/v1/detect",status="200"}' in text
    assert 'weedscan_requests_total{method="POST",route="/v1/detect",status="400"}' in text
    assert "weedscan_inference_seconds_count" in text
    assert "weedscan_request_seconds_bucket" in text
    assert "weedscan_inflight_requests 0.0" in text
    assert "weedscan_model_info{" in text


def test_metrics_count_client_errors_and_failures(shipped_model: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with make_client(shipped_model) as client:
        wait_ready(client.get)
        assert_error(detect_raw(client, conf=2), 422, "invalid_parameter")
        assert_error(client.get("/nowhere"), 404, "not_found")
        service = client.app.state.service

        def broken(*args: object) -> None:
            raise RuntimeError("simulated failure")

        monkeypatch.setattr(service.detector, "detect", broken)
        assert_error(detect_raw(client), 500, "internal_error")
        monkeypatch.undo()
        assert detect_raw(client).status_code == 200  # the next request is served
        text = client.get("/metrics").text
    for status in ("200", "422", "500"):
        assert f'weedscan_requests_total{{method="POST",route="/v1/detect",status="{status}"}} 1.0' in text
    assert 'weedscan_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert "weedscan_inflight_requests 0.0" in text


def test_bad_parameter_message_names_the_parameter(client: TestClient) -> None:
    message = detect_raw(client, conf=2).json()["error"]["message"]
    assert message.startswith("conf:"), message
    message = detect_raw(client, tile="sometimes", lanes="x").json()["error"]["message"]
    assert "tile:" in message and "lanes:" in message, message


def test_small_and_big_uploads_take_their_decode_paths_to_the_same_answer(
        shipped_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames up to INLINE_DECODE_MAX_BYTES decode on the inference thread, bigger uploads in the
    thread pool first; both must give the same answer."""
    from serving.api import batcher as batcher_module
    from serving.api import service as service_module

    with make_client(shipped_model) as client:
        wait_ready(client.get)
        calls: list[str] = []
        real_decode = service_module.decode_image
        for module in (service_module, batcher_module):  # the lane's frame batcher, the pool's path
            monkeypatch.setattr(module, "decode_image", lambda data, limit: (
                calls.append(threading.current_thread().name), real_decode(data, limit))[1])
        inline = detect_raw(client, PNG, "image/png", conf=0.01).json()
        monkeypatch.setattr(service_module, "INLINE_DECODE_MAX_BYTES", len(PNG) - 1)
        pooled = detect_raw(client, PNG, "image/png", conf=0.01).json()
    assert calls[0].startswith("weedscan-infer") and not calls[1].startswith("weedscan-infer"), calls
    assert inline["detections"] == pooled["detections"] and inline["detections"]
    assert inline["timing_ms"]["decode"] > 0 and pooled["timing_ms"]["decode"] > 0


def test_decoding_is_warmed_before_ready(shipped_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first client's image must not pay for loading Pillow's plugins (~25 ms)."""
    from serving.api import service as service_module

    warmed: list[bool] = []
    monkeypatch.setattr(service_module, "warm_up_decoding", lambda: warmed.append(True))
    with make_client(shipped_model) as client:
        wait_ready(client.get)
        assert warmed == [True]


def test_overload_gets_503_with_retry_after(client: TestClient) -> None:
    service = client.app.state.service
    held = [service.admit() for _ in range(service.settings.max_inflight)]
    for admission in held:
        admission.__enter__()
    try:
        response = detect_raw(client)
        assert_error(response, 503, "overloaded")
        assert 1 <= int(response.headers["retry-after"]) <= 3  # spread (serving/api/errors.py)
    finally:
        for admission in held:
            admission.__exit__(None, None, None)
    assert detect_raw(client).status_code == 200


def test_not_ready_until_the_model_loads(tmp_path: Path) -> None:
    with make_client(tmp_path / "missing.onnx") as broken:
        for _ in range(50):
            if broken.app.state.service.load_error:
                break
            import time

            time.sleep(0.05)
        response = broken.get("/readyz")
        assert_error(response, 503, "not_ready")
        assert "Retry-After" in response.headers
        assert_error(detect_raw(broken), 503, "not_ready")
        assert broken.get("/healthz").status_code == 200


def test_uploads_are_never_spooled_to_disk(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an upload was about to be written to a temporary file")

    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    big = images.encode(images.field_like(2000, 1500, seed=3), ".png")  # > 1 MB: Starlette would spool
    assert len(big) > 1024 * 1024
    response = client.post("/v1/detect", files={"image": ("big.png", big, "image/png")})
    assert response.status_code == 200
