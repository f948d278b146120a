"""A few uploads cannot hold the body-memory budget for long: a body may not pause for over
WEEDSCAN_BODY_TIMEOUT_S nor take over WEEDSCAN_BODY_MAX_S in all, however much of it came fast,
and one client address holds at most its share of the budget. Over raw loopback sockets (two
source addresses) to a real `weedscan serve`."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from tests import images
from tests.netguard import is_loopback_host
from tests.robustness.rawhttp import read_until_closed, request_head, status_of
from tests.serving.conftest import LiveServer

FRAME = images.encode(images.field_like(160, 120), ".jpg")
MIB = 1024 * 1024
TINY = {"WEEDSCAN_MAX_UPLOAD_MB": "1", "WEEDSCAN_MAX_BATCH_MB": "1"}  # one body fills 1 MB


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    assert is_loopback_host(source)
    return socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))


def upload_head(size: int) -> bytes:
    return request_head("/v1/detect", {"Content-Type": "image/jpeg", "Content-Length": str(size)})


def detect(server: LiveServer, source: str = "127.0.0.1", body: bytes = FRAME) -> int:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, base_url=server.url, timeout=60) as client:
        return client.post("/v1/detect", content=body,
                           headers={"Content-Type": "image/jpeg"}).status_code


def served_within(server: LiveServer, seconds: float) -> float | None:
    """Seconds until a detect is served (not 503), or None."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if detect(server) == 200:
            return time.monotonic() - start
        time.sleep(0.2)
    return None


@pytest.fixture
def tiny(shipped_model: Path):  # noqa: ANN201
    server = LiveServer(shipped_model, env={**TINY, "WEEDSCAN_MAX_BODY_MEMORY_MB": "1",
                                            "WEEDSCAN_BODY_TIMEOUT_S": "2",
                                            "WEEDSCAN_BODY_MAX_S": "4"})
    yield server
    log = server.stop()
    assert "Traceback" not in log, log[-4000:]


def test_a_stall_after_most_of_a_body_holds_the_budget_briefly(tiny: LiveServer) -> None:
    sock = connect(tiny.port)
    try:  # 1 MiB - 100 bytes at once, then nothing: the whole budget, held until it times out
        sock.sendall(upload_head(MIB) + b"\xff\xd8" + b"\0" * (MIB - 102))
        time.sleep(0.5)
        assert detect(tiny) == 503
        waited = served_within(tiny, 12)
        assert waited is not None, "the stalled upload held the budget"
        answer = read_until_closed(sock)
        assert status_of(answer) == 408 and b'"body_timeout"' in answer, answer[:300]
    finally:
        sock.close()


def test_a_trickle_after_most_of_a_body_ends_at_the_total_limit(tiny: LiveServer) -> None:
    sock = connect(tiny.port)
    try:
        sock.sendall(upload_head(MIB) + b"\xff\xd8" + b"\0" * (MIB - 1000))
        start = time.monotonic()
        while time.monotonic() - start < 12:  # a byte every 0.5 s: never a 2 s pause
            try:
                sock.sendall(b"\0")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.5)
            if detect(tiny) == 200:
                break
        else:
            pytest.fail("a trickling upload held the budget past WEEDSCAN_BODY_MAX_S")
        assert time.monotonic() - start < 4 + 4  # the limit, and slack for a busy machine
    finally:
        sock.close()


def test_one_client_holds_at_most_its_share(shipped_model: Path) -> None:
    """Budget 4 MB, share a quarter (but one whole body, 1 MB): a client stalling uploads of
    0.7 MB on six connections holds one of them; another address still gets in."""
    server = LiveServer(shipped_model, env={**TINY, "WEEDSCAN_MAX_BODY_MEMORY_MB": "4",
                                            "WEEDSCAN_BODY_TIMEOUT_S": "20"})
    socks: list[socket.socket] = []
    try:
        size = 700 * 1024
        refused = 0
        for _ in range(6):
            sock = connect(server.port)
            socks.append(sock)
            sock.sendall(upload_head(size + 100) + b"\xff\xd8" + b"\0" * (size - 2))
            time.sleep(0.3)
        for sock in socks[1:]:
            sock.settimeout(10)
            answer = read_until_closed(sock)
            refused += status_of(answer) == 503 and b"share" in answer
        assert refused == 5, refused
        other = detect(server, "127.0.0.2", b"\xff\xd8" + b"\0" * (900 * 1024))
        assert other == 400, other  # read whole (a broken JPEG), not refused for memory
        assert detect(server, "127.0.0.2") == 200
    finally:
        for sock in socks:
            sock.close()
        log = server.stop()
    assert "Traceback" not in log, log[-4000:]
