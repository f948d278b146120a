"""Connections that send a request head and then no body cannot fill the connection cap: over it,
the upload that has sent least of its body is closed to make room, so new clients, a liveness
probe included, still get in, and uploads that are making progress are kept. Over raw loopback
sockets to a real `weedscan serve`."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.robustness.rawhttp import nothing_received, open_socket, request_head
from tests.serving.conftest import LiveServer

MAX_CONNECTIONS = 20


def test_zero_byte_bodies_do_not_shut_out_new_clients(shipped_model: Path) -> None:
    server = LiveServer(shipped_model, env={"WEEDSCAN_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
                                            "WEEDSCAN_BODY_TIMEOUT_S": "60"})
    socks = []
    try:
        head = request_head("/v1/detect", {"Content-Type": "image/jpeg", "Content-Length": "100000"})
        progressing = []
        for i in range(2 * MAX_CONNECTIONS):
            sock = open_socket(server.port)
            sock.sendall(head + (b"\xff\xd8" + b"\0" * 2000 if i < 5 else b""))
            (progressing if i < 5 else socks).append(sock)
            time.sleep(0.02)
        for _ in range(3):  # a liveness probe on a new connection each time
            assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200
        time.sleep(0.5)
        assert all(nothing_received(sock) for sock in progressing), "an upload with progress was closed"
        assert sum(not nothing_received(sock) for sock in socks) >= MAX_CONNECTIONS
    finally:
        for sock in socks + progressing:
            sock.close()
        log = server.stop()
    assert "Traceback" not in log, log[-4000:]
