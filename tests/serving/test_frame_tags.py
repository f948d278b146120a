"""What a robot matches answers to frames by: `?frame_id=` and the X-Request-ID header echoed in
the answer (the header also on every response, refusals included), and the receive time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.answer import DetectAnswer
from tests import images
from tests.serving.conftest import LiveServer

RAW = {"Content-Type": "image/jpeg"}
JPEG = images.encode(images.field_like(320, 240))
MS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def check_tags(http: Any) -> None:
    before = datetime.now(UTC)
    response = http.post("/v1/detect", content=JPEG, params={"frame_id": "cam2/000417"},
                         headers={**RAW, "X-Request-ID": "3f9c2a7e-robot-a"})
    after = datetime.now(UTC)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["frame_id"] == "cam2/000417" and answer["request_id"] == "3f9c2a7e-robot-a"
    assert response.headers["X-Request-ID"] == "3f9c2a7e-robot-a"
    assert MS_UTC.match(answer["received_at"]), answer["received_at"]
    received = datetime.fromisoformat(answer["received_at"].replace("Z", "+00:00"))
    assert before - timedelta(milliseconds=1) <= received <= after
    assert DetectAnswer.model_validate(answer).frame_id == "cam2/000417"

    plain = http.post("/v1/detect", content=JPEG, headers=RAW)
    assert MS_UTC.match(plain.json()["received_at"])  # every answer has the receive time
    assert {"frame_id", "request_id"}.isdisjoint(plain.json()) and "X-Request-ID" not in plain.headers

    files = [("images", ("a.jpg", JPEG, "image/jpeg"))]
    batch = http.post("/v1/detect/batch", files=files, params={"frame_id": "pass-7"},
                      headers={"X-Request-ID": "b-1"})
    body = batch.json()
    assert body["frame_id"] == "pass-7" and body["request_id"] == "b-1" and MS_UTC.match(body["received_at"])
    assert batch.headers["X-Request-ID"] == "b-1"


def check_refusals(http: Any) -> None:
    for frame_id in ("two words", "x" * 129, "caf\u00e9", "tab\there", ""):
        response = http.post("/v1/detect", content=JPEG, headers=RAW, params={"frame_id": frame_id})
        assert response.status_code == 422, frame_id
        assert response.json()["error"]["code"] == "invalid_parameter"
        assert "frame_id" in response.json()["error"]["message"]
    for request_id in ("a b", "x" * 129):
        response = http.post("/v1/detect", content=JPEG, headers={**RAW, "X-Request-ID": request_id})
        assert response.status_code == 422 and "X-Request-ID" in response.json()["error"]["message"]
        assert "X-Request-ID" not in response.headers  # a malformed id is never echoed
    # a refusal echoes a well-formed id: the robot knows which frame was refused
    refused = http.post("/v1/detect", content=b"not an image", headers={**RAW, "X-Request-ID": "f-9"})
    assert refused.status_code == 400 and refused.headers["X-Request-ID"] == "f-9"
    assert set(refused.json()) == {"error"}
    missing = http.get("/v1/nothing-here", headers={"X-Request-ID": "f-10"})
    assert missing.status_code == 404 and missing.headers["X-Request-ID"] == "f-10"


def test_tags_in_process(client: TestClient) -> None:
    check_tags(client)


def test_bad_tags_are_refused_in_process(client: TestClient) -> None:
    check_refusals(client)


def test_tags_over_http(live_server: LiveServer) -> None:
    check_tags(live_server.http)
    check_refusals(live_server.http)


@pytest.mark.parametrize("path", ["/v1/detect", "/healthz"])
def test_a_duplicated_request_id_is_not_echoed(live_server: LiveServer, path: str) -> None:
    """Two X-Request-ID headers: which one would the client expect? Neither is echoed."""
    headers = httpx.Headers([("X-Request-ID", "a"), ("X-Request-ID", "b")])
    response = live_server.http.get(path, headers=headers)
    assert "X-Request-ID" not in response.headers
