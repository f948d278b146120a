"""Over real HTTP: while every inference slot is taken, an inference POST is refused
in front of the app (serving/api/shedding.py): before its body is read, with the app's 503
(JSON error, Retry-After, security headers), counted in /metrics, on a connection that stays
usable; and Retry-After grows with the pressure of refusals."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from serving.api.admission import Pressure
from serving.api.app import create_app
from serving.config import Settings
from tests import images
from tests.robustness.rawhttp import metric, open_socket, poll, read_response, request_head, status_of
from tests.robustness.test_pixel_admission import post_raw, rle_bmp
from tests.serving.conftest import LiveServer, wait_ready

FRAME = images.encode(images.field_like(320, 240), ".jpg")


def test_a_saturated_server_refuses_before_reading_the_body(shipped_model: Path) -> None:
    server = LiveServer(shipped_model, env={"WEEDSCAN_THREADS": "1", "WEEDSCAN_MAX_INFLIGHT": "1"})
    try:
        holder = post_raw(server, "/v1/detect", rle_bmp(), "image/bmp")  # 36 MP: seconds in flight
        assert poll(lambda: metric(server.http.get("/metrics").text, "weedscan_inflight_requests") >= 1,
                    attempts=400, pause=0.02)
        # A head that promises 100 kB and sends none of it: answered at once, body unread.
        sock = open_socket(server.port, timeout=10)
        sock.sendall(request_head("/v1/detect", {"Content-Type": "image/jpeg", "Content-Length": "100000"}))
        refused = read_response(sock)
        assert status_of(refused) == 503, refused[:300]
        head, _, body = refused.partition(b"\r\n\r\n")
        lowered = head.lower()
        assert b'"code":"overloaded"' in body
        for header in (b"retry-after: ", b"content-security-policy: ", b"x-content-type-options: nosniff"):
            assert header in lowered, head
        assert b"connection: close" not in lowered
        # The same connection carries on: the unread body is skipped, the next request answered.
        sock.sendall(b"\0" * 100_000 + request_head("/healthz", {}, method="GET"))
        assert status_of(read_response(sock)) == 200
        sock.close()
        for path in ("/v1/detect/batch", "/v1/annotate"):
            other = httpx.post(f"{server.url}{path}", content=FRAME, timeout=30,
                               headers={"Content-Type": "image/jpeg"})
            assert other.status_code == 503 and other.json()["error"]["code"] == "overloaded", path
        metrics = server.http.get("/metrics").text
        assert metric(metrics, "weedscan_requests_total", route="/v1/detect", status="503") >= 1
        assert metric(metrics, "weedscan_requests_total", route="/v1/annotate", status="503") >= 1
        assert metric(metrics, "weedscan_overload_rejections_total") >= 3
        assert status_of(read_response(holder)) == 200
        holder.close()
        frame = httpx.post(f"{server.url}/v1/detect", content=FRAME, timeout=60,
                           headers={"Content-Type": "image/jpeg"})
        assert frame.status_code == 200, frame.text  # the slot is free again
    finally:
        log = server.stop()
    assert "Traceback" not in log and "internal_error" not in log, log[-4000:]


def test_shedding_in_process_leaves_other_routes_and_bad_input_to_the_app(shipped_model: Path) -> None:
    app = create_app(Settings(model=shipped_model, max_inflight=1, retry_after_s=1))
    with TestClient(app) as client:
        wait_ready(client.get)
        service = app.state.service
        with service.admit():  # the one slot, taken
            shed = client.post("/v1/detect", content=FRAME, headers={"Content-Type": "image/jpeg"})
            assert shed.status_code == 503 and shed.json()["error"]["code"] == "overloaded"
            assert client.get("/healthz").status_code == 200
            assert client.get("/v1/models").status_code == 200
        assert client.post("/v1/detect", content=FRAME, headers={"Content-Type": "image/jpeg"}).status_code == 200
        service.ready = False  # not ready: the app's own 503 says why, not the shedder's
        not_ready = client.post("/v1/detect", content=FRAME, headers={"Content-Type": "image/jpeg"})
        assert not_ready.status_code == 503 and not_ready.json()["error"]["code"] == "not_ready"
        service.ready = True


def test_retry_after_grows_with_the_refusals_per_answer(shipped_model: Path) -> None:
    settings = Settings(model=shipped_model, max_inflight=1, retry_after_s=1, retry_after_max_s=30)
    app = create_app(settings)
    service = app.state.service
    assert service.retry_after_base() == 1  # no pressure: the configured base
    for _ in range(5):
        service.admission.note_served(None)
    for _ in range(40):
        service.note_shed()
    assert service.retry_after_base() == 8  # 40 refusals per 5 answers
    for _ in range(400):
        service.note_shed()
    assert service.retry_after_base() == 10  # capped: 3x it stays within WEEDSCAN_RETRY_AFTER_MAX_S


def test_pressure_forgets_old_seconds(monkeypatch) -> None:  # noqa: ANN001 - pytest's fixture
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    pressure = Pressure()
    for _ in range(30):
        pressure.refused()
    pressure.served()
    assert pressure.ratio() == 30
    now[0] += Pressure.WINDOW_S  # the window has moved past that second
    assert pressure.ratio() == 0


def test_a_client_back_before_its_retry_after_waits_for_it(shipped_model: Path) -> None:
    """Same connection, retried at once: the second 503 comes only when the first one's
    Retry-After is up; a new connection's first refusal is immediate."""
    server = LiveServer(shipped_model, env={"WEEDSCAN_THREADS": "1", "WEEDSCAN_MAX_INFLIGHT": "1",
                                            "WEEDSCAN_RETRY_AFTER_S": "1", "WEEDSCAN_RETRY_AFTER_MAX_S": "3"})
    try:
        holder = post_raw(server, "/v1/detect", rle_bmp(8000, 8000), "image/bmp")  # seconds in flight
        assert poll(lambda: metric(server.http.get("/metrics").text, "weedscan_inflight_requests") >= 1,
                    attempts=400, pause=0.02)
        impatient = open_socket(server.port, timeout=30)
        ask = request_head("/v1/detect", {"Content-Type": "image/jpeg", "Content-Length": str(len(FRAME))}) + FRAME
        impatient.sendall(ask)
        first = read_response(impatient)
        first_at = time.monotonic()
        assert status_of(first) == 503, first[:300]
        told = int(first.lower().split(b"retry-after: ")[1].split(b"\r\n")[0])
        impatient.sendall(ask)  # at once, Retry-After ignored
        second = read_response(impatient)
        waited = time.monotonic() - first_at
        # 64 MP tiled on one thread takes longer than the <= 3 s told: the slot is still taken
        assert metric(server.http.get("/metrics").text, "weedscan_inflight_requests") >= 1
        assert status_of(second) == 503 and waited >= told - 0.5, (told, waited)  # held, not busy-looped
        other = open_socket(server.port, timeout=30)
        other.sendall(ask)
        assert status_of(read_response(other)) == 503  # a first refusal on a new connection
        other.close()
        impatient.close()
        assert status_of(read_response(holder)) == 200
        holder.close()
    finally:
        log = server.stop()
    assert "Traceback" not in log and "internal_error" not in log, log[-4000:]


def test_an_early_comer_is_held_in_process_and_served_if_room_comes(shipped_model: Path) -> None:
    app = create_app(Settings(model=shipped_model, max_inflight=1, retry_after_s=1, retry_after_max_s=3))
    with TestClient(app) as client:
        wait_ready(client.get)
        service = app.state.service
        post = lambda: client.post("/v1/detect", content=FRAME, headers={"Content-Type": "image/jpeg"})  # noqa: E731
        with service.admit():
            first = post()
            assert first.status_code == 503
            told, start = int(first.headers["Retry-After"]), time.monotonic()
            second = post()  # the same client, at once
            assert second.status_code == 503 and time.monotonic() - start >= told - 0.5
        # back early again, but the slot is free by the time its Retry-After is up: served
        slot = service.admit()
        slot.__enter__()
        early = post()  # refused, remembered
        assert early.status_code == 503
        threading.Timer(0.2, slot.__exit__, (None, None, None)).start()
        assert post().status_code == 200
