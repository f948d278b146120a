"""A chunked body's trailer (header lines after the last chunk) is held to the head's limits: its
size counts against WEEDSCAN_MAX_HEADER_KB (431, without buffering more) and it must arrive within
WEEDSCAN_HEADER_TIMEOUT_S (408, or the connection closed when the answer has gone already).
Ordinary chunked uploads, with or without a small trailer, are served. Over raw loopback sockets
to a real `weedscan serve`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import images
from tests.robustness.rawhttp import open_socket, read_response, read_until_closed, request_head, status_of
from tests.serving.conftest import LiveServer

HEAD_TIMEOUT_S = 1
CLOSED_WITHIN_S = HEAD_TIMEOUT_S + 6  # slack for a busy machine
JPEG = images.encode(images.field_like(1600, 1200), ".jpg")
CHUNKED = {"Content-Type": "image/jpeg", "Transfer-Encoding": "chunked"}


@pytest.fixture(scope="module")
def server(shipped_model: Path) -> Iterator[LiveServer]:
    server = LiveServer(shipped_model, env={"WEEDSCAN_HEADER_TIMEOUT_S": str(HEAD_TIMEOUT_S),
                                            "WEEDSCAN_MAX_HEADER_KB": "16",
                                            "WEEDSCAN_KEEP_ALIVE_S": "60"})
    yield server
    log = server.stop()
    assert "Traceback" not in log, log[-4000:]


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


def test_a_huge_trailer_is_refused_early(server: LiveServer) -> None:
    sock = open_socket(server.port)
    sock.sendall(request_head("/v1/detect", CHUNKED) + chunk(JPEG[:100]) + b"0\r\nX-Trailer: ")
    piece, sent = b"a" * 65536, 0
    try:
        while sent < 8 << 20:
            sock.sendall(piece)
            sent += len(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused and closed
    assert sent < 8 << 20, "the server took an 8 MB trailer"
    answer = read_until_closed(sock)
    sock.close()
    assert answer == b"" or status_of(answer) == 431, answer[:300]
    start = time.monotonic()
    assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200
    assert time.monotonic() - start < 2


def test_a_trickled_trailer_times_out(server: LiveServer) -> None:
    """To a route that answers without reading the body, and to one that reads it."""
    for path, status in (("/no/such/route", None), ("/v1/detect", 408)):
        sock = open_socket(server.port, timeout=CLOSED_WITHIN_S)
        sock.sendall(request_head(path, CHUNKED) + chunk(JPEG[:100]) + b"0\r\nX-Slow: ")
        start, answer = time.monotonic(), b""
        try:
            while time.monotonic() - start < CLOSED_WITHIN_S:
                sock.sendall(b"a")
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = read_until_closed(sock)
        except TimeoutError:
            pytest.fail(f"{path}: the trailer was still being taken after {CLOSED_WITHIN_S} s")
        finally:
            sock.close()
        assert time.monotonic() - start < CLOSED_WITHIN_S + 1, path
        if status is not None and answer:
            assert status_of(answer) == status and b'"request_timeout"' in answer, answer[:300]


def test_chunked_uploads_with_and_without_a_trailer_are_served(server: LiveServer) -> None:
    for trailer in (b"", b"X-Checksum: abc\r\n"):
        sock = open_socket(server.port)
        try:
            sock.sendall(request_head("/v1/detect", CHUNKED))
            for start in range(0, len(JPEG), 16384):  # each chunk header ends a send
                sock.sendall(b"%x\r\n" % len(JPEG[start:start + 16384]))
                time.sleep(0.002)
                sock.sendall(JPEG[start:start + 16384] + b"\r\n")
            sock.sendall(b"0\r\n" + trailer + b"\r\n")
            answer = read_response(sock)
        finally:
            sock.close()
        assert status_of(answer) == 200, answer[:300]
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["image"]["width"] == 1600
