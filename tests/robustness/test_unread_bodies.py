"""A request answered before its body was read (a 404, a refusal): the rest of its body must
arrive within the keep-alive time, and the connection is then idle like any other, so a client
that trickles the rest, or sends it and falls silent, cannot hold the connection for ever.
Over raw loopback sockets to a real `weedscan serve`."""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.robustness.rawhttp import open_socket, read_response, request_head, status_of
from tests.serving.conftest import LiveServer

KEEP_ALIVE_S = 2
CLOSED_WITHIN_S = KEEP_ALIVE_S + 6  # slack for a busy machine; a held connection never closes


@pytest.fixture(scope="module")
def server(shipped_model: Path) -> Iterator[LiveServer]:
    server = LiveServer(shipped_model, env={"WEEDSCAN_KEEP_ALIVE_S": str(KEEP_ALIVE_S)})
    yield server
    log = server.stop()
    assert "Traceback" not in log, log[-4000:]


def answered_early(server: LiveServer, declared: int, sent: int):  # noqa: ANN201 - a socket
    """A POST to no route, declaring `declared` body bytes and sending `sent`: answered 404
    without its body being read."""
    sock = open_socket(server.port, timeout=10)
    sock.sendall(request_head("/no/such/route", {"Content-Type": "application/octet-stream",
                                                 "Content-Length": str(declared)}) + b"x" * sent)
    assert status_of(read_response(sock)) == 404
    return sock


def closed(sock, wait: float) -> bool:  # noqa: ANN001
    """True when the server closed the connection within `wait` seconds."""
    if not select.select([sock], [], [], wait)[0]:
        return False
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_trickled_unread_body_is_cut_off(server: LiveServer) -> None:
    sock = answered_early(server, declared=1_000_000, sent=100)
    start = time.monotonic()
    try:
        while time.monotonic() - start < CLOSED_WITHIN_S:
            try:
                sock.sendall(b"x")  # a byte every 0.2 s: each used to cancel the keep-alive timer
            except (BrokenPipeError, ConnectionResetError):
                break
            if closed(sock, 0.2):
                break
        else:
            pytest.fail(f"the connection was still open after {CLOSED_WITHIN_S} s")
        assert time.monotonic() - start >= KEEP_ALIVE_S - 0.5  # not cut before its time
    finally:
        sock.close()


def test_an_unread_body_sent_in_full_leaves_an_idle_connection(server: LiveServer) -> None:
    """The rest arrives; the connection then serves the next request, or, silent, is closed."""
    sock = answered_early(server, declared=1000, sent=100)
    try:
        sock.sendall(b"x" * 900)
        time.sleep(0.2)
        sock.sendall(request_head("/healthz", {}, method="GET"))
        assert status_of(read_response(sock)) == 200
    finally:
        sock.close()
    sock = answered_early(server, declared=1000, sent=100)
    try:
        sock.sendall(b"x" * 900)
        assert closed(sock, CLOSED_WITHIN_S), "an idle connection was held past its keep-alive"
    finally:
        sock.close()
