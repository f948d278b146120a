"""Over real HTTP: stalled or trickling uploads hold no inference slot (the body
is read before admission, within a deadline and a minimum rate: else 408 and the connection
closes), and a client that leaves mid-upload is a 499 in /metrics and one warning line, not a
500 with a traceback."""

from __future__ import annotations

import select
from pathlib import Path

import httpx

from tests import images
from tests.robustness.rawhttp import (
    metric,
    nothing_received,
    open_socket,
    poll,
    read_until_closed,
    request_head,
    stalled_upload,
    status_of,
)
from tests.serving.conftest import LiveServer

JPEG = images.encode(images.field_like(320, 240), ".jpg")
STALLED = 10  # more than WEEDSCAN_MAX_INFLIGHT (8)


def detect(server: LiveServer) -> int:
    """On a new connection: accepted after the stalled ones, so it reaches the app after them."""
    return httpx.post(f"{server.url}/v1/detect", content=JPEG, timeout=60,
                      headers={"Content-Type": "image/jpeg"}).status_code


def test_stalled_uploads_do_not_lock_others_out_and_leaving_is_a_499(shipped_model: Path) -> None:
    # A deadline far away: the stalled uploads stay open for the whole test.
    server = LiveServer(shipped_model, env={"WEEDSCAN_BODY_TIMEOUT_S": "600"})
    try:
        stalled = [stalled_upload(server.port) for _ in range(STALLED)]
        assert [detect(server) for _ in range(3)] == [200] * 3  # not 503: no slot is held
        assert all(nothing_received(sock) for sock in stalled)  # still waiting for their bodies
        for sock in stalled:  # the clients give up mid-upload
            sock.close()

        def counted() -> bool:
            return metric(server.http.get("/metrics").text, "weedscan_requests_total",
                          route="/v1/detect", status="499") == STALLED

        assert poll(counted), server.http.get("/metrics").text
        text = server.http.get("/metrics").text
        assert metric(text, "weedscan_requests_total", route="/v1/detect", status="500") == 0
        assert metric(text, "weedscan_inflight_requests") == 0
        assert detect(server) == 200
    finally:
        log = server.stop()
    assert "Traceback" not in log and "internal_error" not in log, log[-4000:]
    # one warning line stands for them all (the 499s above count each)
    assert log.count("client closed the connection during POST /v1/detect") >= 1, log[-4000:]


def trickle_until_answered(sock, pause: float = 0.2, most: int = 200) -> None:  # noqa: ANN001
    """1 byte every `pause` s until the server answers (at most `most` bytes). No byte is sent
    once the answer is there: one arriving after the server closed would reset the connection
    and could discard the answer."""
    for _ in range(most):
        readable, _, _ = select.select([sock], [], [], pause)
        if readable:
            return
        sock.sendall(b"\x00")
    raise AssertionError(f"no answer to a body trickled at {1 / pause:g} B/s")


def test_stalled_and_trickling_bodies_get_408_and_lose_their_connection(shipped_model: Path) -> None:
    server = LiveServer(shipped_model, env={"WEEDSCAN_BODY_TIMEOUT_S": "1",
                                            "WEEDSCAN_BODY_MIN_RATE_KB_S": "16"})
    try:
        stalled = [stalled_upload(server.port) for _ in range(STALLED)]
        annotate = open_socket(server.port)
        annotate.sendall(request_head("/v1/annotate", {"Content-Type": "image/png",
                                                       "Content-Length": "5000"}))
        trickler = open_socket(server.port)
        trickler.sendall(request_head("/v1/detect", {"Content-Type": "image/jpeg",
                                                     "Content-Length": "100000"}))
        trickle_until_answered(trickler)  # each byte comes well before the deadline it had
        for sock in [*stalled, annotate, trickler]:
            answer = read_until_closed(sock)  # the server closes after its 408
            assert status_of(answer) == 408, answer[:300]
            assert b'"code":"body_timeout"' in answer, answer[-300:]
            sock.close()
        assert detect(server) == 200
        text = server.http.get("/metrics").text
        assert metric(text, "weedscan_requests_total", route="/v1/detect", status="408") == STALLED + 1
        assert metric(text, "weedscan_inflight_requests") == 0
    finally:
        log = server.stop()
    assert "Traceback" not in log, log[-4000:]


def test_bodies_held_in_memory_are_bounded(shipped_model: Path) -> None:
    """Bodies are read before admission, so their memory has its own bound: with 1 MiB for all
    bodies, an upload that would pass it gets 503 (and its connection closes) while a small one
    still fits; what a stalled upload sent is given back when it leaves."""
    mib = "1"
    server = LiveServer(shipped_model, env={"WEEDSCAN_MAX_BODY_MEMORY_MB": mib,
                                            "WEEDSCAN_MAX_UPLOAD_MB": mib, "WEEDSCAN_MAX_BATCH_MB": mib,
                                            "WEEDSCAN_BODY_TIMEOUT_S": "600"})

    def held() -> float:
        return metric(server.http.get("/metrics").text, "weedscan_request_body_bytes")

    try:
        big = stalled_upload(server.port, declared=1_040_000, sent=b"\xff" * 1_000_000)
        assert poll(lambda: held() == 1_000_000), held()
        over = stalled_upload(server.port, declared=100_000, sent=b"\xff" * 50_000)
        answer = read_until_closed(over)
        assert status_of(answer) == 503 and b'"code":"overloaded"' in answer, answer[:300]
        assert b"retry-after" in answer.lower()
        assert len(JPEG) < (1 << 20) - 1_000_000
        assert detect(server) == 200  # a small frame still fits beside the big upload
        big.close()
        assert poll(lambda: held() == 0), held()
        assert detect(server) == 200
    finally:
        log = server.stop()
    assert "Traceback" not in log, log[-4000:]
