"""serving/client.py against a live server over real HTTP: typed answers, one keep-alive
connection, timeouts, typed errors, and 503/429 retried after Retry-After (bounded)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from serving.answer import BatchError, BatchItem, DetectAnswer
from serving.api.app import create_app
from serving.client import ApiError, RetryPolicy, TransportError, WeedscanClient, retry_after_s
from serving.config import Settings
from tests import images
from tests.serving.conftest import LiveServer, free_port, wait_ready

JPEG = images.encode(images.field_like(640, 480))


def test_typed_answers_and_frame_tags(live_server: LiveServer, tmp_path: Path) -> None:
    with WeedscanClient(live_server.url, timeout=30) as weedscan:
        answer = weedscan.detect(JPEG, conf=0.01, lanes=4, frame_id="cam1-17", request_id="r-17",
                                 vegetation_mask=True)
        assert isinstance(answer, DetectAnswer)
        raw = live_server.http.post("/v1/detect", content=JPEG, params={"conf": 0.01, "lanes": 4},
                                    headers={"Content-Type": "image/jpeg"}).json()
        assert answer.counts == raw["counts"] and answer.lanes == raw["lanes"]
        assert [d.box.x1 for d in answer.detections] == [d["box"]["x1"] for d in raw["detections"]]
        assert (answer.frame_id, answer.request_id) == ("cam1-17", "r-17")
        assert answer.received_at is not None and answer.received_at.tzinfo is not None
        assert answer.vegetation_mask is not None and answer.vegetation_mask.pixels().any()

        photo = tmp_path / "field.jpg"
        photo.write_bytes(JPEG)  # a path: read, and sent as image/jpeg
        assert weedscan.detect(photo, conf=0.01, classes=["weed"]).counts["crop"] == 0

        batch = weedscan.detect_batch([photo, ("broken.jpg", b"nope")], conf=0.01, frame_id="pass-2")
        assert batch.frame_id == "pass-2"
        first, broken = batch.results
        assert isinstance(first, BatchItem) and first.filename == "field.jpg"
        assert isinstance(broken, BatchError) and broken.error.code == "undecodable_image"


def test_requests_share_one_keep_alive_connection(live_server: LiveServer) -> None:
    ports: list[int] = []

    def note_port(response: httpx.Response) -> None:
        ports.append(response.extensions["network_stream"].get_extra_info("client_addr")[1])

    with WeedscanClient(live_server.url, timeout=30) as weedscan:
        weedscan.http.event_hooks["response"].append(note_port)
        for _ in range(3):
            weedscan.detect(JPEG)
        assert weedscan.ready()
    assert len(ports) == 4 and len(set(ports)) == 1, ports


def test_refusals_are_typed_errors(live_server: LiveServer) -> None:
    with WeedscanClient(live_server.url, timeout=30) as weedscan:
        with pytest.raises(ApiError) as not_image:
            weedscan.detect(b"not an image at all", request_id="bad-1")
        assert (not_image.value.status, not_image.value.code) == (415, "unsupported_media_type")
        assert not_image.value.request_id == "bad-1" and not_image.value.message
        with pytest.raises(ApiError) as undecodable:
            weedscan.detect(JPEG[:200])  # a JPEG's signature, cut short
        assert (undecodable.value.status, undecodable.value.code) == (400, "undecodable_image")
        with pytest.raises(ApiError) as unknown:
            weedscan.detect(JPEG, classes=["dandelion"])
        assert (unknown.value.status, unknown.value.code) == (422, "invalid_parameter")
        assert "dandelion" in unknown.value.message


def test_the_api_key_travels(shipped_model: Path) -> None:
    server = LiveServer(shipped_model, env={"WEEDSCAN_API_KEYS": "k-123"})
    try:
        with WeedscanClient(server.url, timeout=30) as anonymous, pytest.raises(ApiError) as refused:
            anonymous.detect(JPEG)
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")
        with WeedscanClient(server.url, api_key="k-123", timeout=30) as keyed:
            assert keyed.detect(JPEG).image.width == 640
    finally:
        server.stop()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A socket that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


def test_a_silent_server_times_out(silent_port: int) -> None:
    with WeedscanClient(f"http://127.0.0.1:{silent_port}", timeout=0.3) as weedscan, \
            pytest.raises(TransportError, match="timeout"):
        weedscan.detect(JPEG)


def test_no_server_is_a_transport_error() -> None:
    with WeedscanClient(f"http://127.0.0.1:{free_port()}", timeout=2) as weedscan:
        with pytest.raises(TransportError):
            weedscan.detect(JPEG)
        with pytest.raises(TransportError):
            weedscan.ready()


@pytest.fixture(scope="module")
def threaded_server(shipped_model: Path) -> Iterator[tuple[str, Any]]:
    """The app served over real HTTP from a thread of this process, so a test can fill its
    inference slots; its URL and its InferenceService."""
    app = create_app(Settings(model=shipped_model, max_inflight=1))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    with httpx.Client(base_url=url) as http:
        wait_ready(http.get)
    yield url, app.state.service
    server.should_exit = True
    thread.join(10)


def test_503_is_retried_after_retry_after(threaded_server: tuple[str, Any]) -> None:
    """The server's inference slot is taken: the 503's Retry-After is waited for (here the wait
    frees the slot), then the retry is answered."""
    url, service = threaded_server
    slot = service.admit()
    slot.__enter__()
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        slot.__exit__(None, None, None)

    with WeedscanClient(url, timeout=30, sleep=wait) as weedscan:
        answer = weedscan.detect(JPEG, frame_id="after-503")
    assert answer.frame_id == "after-503"
    assert len(waits) == 1 and 1 <= waits[0] <= 3  # the server's spread Retry-After


def test_retries_are_bounded(threaded_server: tuple[str, Any]) -> None:
    url, service = threaded_server
    waits: list[float] = []
    with service.admit(), WeedscanClient(url, timeout=30, sleep=waits.append,
                                         retry=RetryPolicy(retries=2)) as weedscan, \
            pytest.raises(ApiError) as refused:
        weedscan.detect(JPEG)
    assert (refused.value.status, refused.value.code) == (503, "overloaded")
    assert len(waits) == 2 and refused.value.retry_after_s is not None


def test_a_long_retry_after_is_not_waited_for(threaded_server: tuple[str, Any]) -> None:
    url, service = threaded_server
    waits: list[float] = []
    with service.admit(), WeedscanClient(url, timeout=30, sleep=waits.append,
                                         retry=RetryPolicy(max_wait_s=0.5)) as weedscan, \
            pytest.raises(ApiError):
        weedscan.detect(JPEG)
    assert waits == []


def scripted(statuses: list[tuple[int, dict[str, str]]], answer: dict[str, Any]) -> httpx.MockTransport:
    """A transport answering the given statuses in turn (JSON errors), then `answer`."""
    replies = iter(statuses)

    def reply(request: httpx.Request) -> httpx.Response:
        status, headers = next(replies, (200, {}))
        if status == 200:
            return httpx.Response(200, json=answer)
        return httpx.Response(status, headers=headers,
                              json={"error": {"code": "too_many_requests", "message": "slow down"}})

    return httpx.MockTransport(reply)


def test_429_and_an_http_date_retry_after(live_server: LiveServer) -> None:
    answer = live_server.http.post("/v1/detect", content=JPEG,
                                   headers={"Content-Type": "image/jpeg"}).json()
    soon = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 2))
    waits: list[float] = []
    transport = scripted([(429, {"Retry-After": soon}), (429, {})], answer)
    with WeedscanClient("http://weedscan.test", transport=transport, sleep=waits.append) as weedscan:
        assert weedscan.detect(JPEG).counts == answer["counts"]
    assert 0 <= waits[0] <= 2 and waits[1] == RetryPolicy().default_wait_s
    with WeedscanClient("http://weedscan.test", transport=scripted([(400, {"Retry-After": "1"})], answer),
                        sleep=waits.append) as weedscan, pytest.raises(ApiError) as refused:
        weedscan.detect(JPEG)
    assert refused.value.status == 400 and len(waits) == 2  # a 400 is not retried
    assert retry_after_s("soon") is None and retry_after_s(" 7 ") == 7.0


def test_an_error_page_that_is_not_json_is_still_typed() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(502, text="<html>bad gateway</html>"))
    with WeedscanClient("http://weedscan.test", transport=transport) as weedscan, \
            pytest.raises(ApiError) as refused:
        weedscan.detect(JPEG)
    assert (refused.value.status, refused.value.code) == (502, "http_502")
    assert "bad gateway" in refused.value.message


def test_the_client_needs_only_the_serving_install() -> None:
    """Importing it loads neither the detector's runtime nor the server."""
    code = ("import sys, serving.client; "
            "print(json.dumps(sorted(m for m in ('onnxruntime', 'cv2', 'fastapi', 'uvicorn', "
            "'torch', 'training') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out) == []
