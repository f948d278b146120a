"""The HTTP protocol's own refusals (bad request line, slow head, oversized head, connection cap,
an Upgrade request) keep the response contract: the JSON error shape and the security headers
every other answer carries. Over raw loopback sockets to a real `weedscan serve`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import images
from tests.robustness.rawhttp import open_socket, read_until_closed, request_head, status_of
from tests.serving.conftest import LiveServer

MAX_CONNECTIONS = 4
PHOTO = images.encode(images.field_like(3264, 2448), ".jpg")


@pytest.fixture(scope="module")
def server(shipped_model: Path) -> Iterator[LiveServer]:
    server = LiveServer(shipped_model, env={"WEEDSCAN_HEADER_TIMEOUT_S": "1",
                                            "WEEDSCAN_MAX_HEADERS": "50",
                                            "WEEDSCAN_MAX_CONNECTIONS": str(MAX_CONNECTIONS)})
    yield server
    log = server.stop()
    assert "Traceback" not in log, log[-4000:]


def check_contract(answer: bytes, status: int, code: str | None = None) -> dict[str, str]:
    """The answer's status, JSON error (when `code`) and security headers; its headers."""
    assert status_of(answer) == status, answer[:300]
    head, _, body = answer.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert "frame-ancestors 'none'" in headers.get("content-security-policy", ""), head
    assert headers.get("x-content-type-options") == "nosniff", head
    assert headers.get("referrer-policy") == "no-referrer", head
    if code is not None:
        assert headers.get("content-type", "").startswith("application/json"), head
        error = json.loads(body)["error"]
        assert error["code"] == code and error["message"], body
    return headers


def exchange(server: LiveServer, data: bytes) -> bytes:
    sock = open_socket(server.port, timeout=15)
    try:
        sock.sendall(data)
        return read_until_closed(sock)
    finally:
        sock.close()


def test_garbage_gets_a_json_400(server: LiveServer) -> None:
    check_contract(exchange(server, b"GARBAGE\r\n\r\n"), 400, "bad_request")


def test_a_slow_head_gets_a_json_408(server: LiveServer) -> None:
    check_contract(exchange(server, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"), 408,
                   "request_timeout")


def test_too_many_headers_get_a_json_431(server: LiveServer) -> None:
    many = request_head("/healthz", {f"X-Many-{i}": "1" for i in range(60)}, method="GET")
    check_contract(exchange(server, many), 431, "too_many_headers")


def test_an_upgrade_request_is_answered_as_plain_http(server: LiveServer) -> None:
    """No endpoint speaks WebSocket: the handshake gets the app's JSON answer, not a bare 403."""
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    check_contract(exchange(server, request_head("/ws", upgrade, method="GET")), 404, "not_found")
    health = exchange(server, request_head("/healthz", upgrade, method="GET"))
    check_contract(health, 200)
    assert b'"status"' in health


def test_the_connection_cap_refusal_is_json(server: LiveServer) -> None:
    """Every connection has a request being answered (tiled photos queued for inference): a
    newcomer gets the 503 in the contract's form, and a flood of them is one log line."""
    server.http.close()  # its idle keep-alive connection would be closed to make room
    params = "?conf=0&iou=0.99&max_det=1000"  # a few seconds of inference each
    busy = []
    try:
        for _ in range(MAX_CONNECTIONS):
            sock = open_socket(server.port)
            sock.sendall(request_head("/v1/detect" + params, {
                "Content-Type": "image/jpeg", "Content-Length": str(len(PHOTO))}) + PHOTO)
            busy.append(sock)
        time.sleep(0.5)  # every body in: each request is decoding or inferring
        headers = check_contract(exchange(server, request_head("/healthz", {}, method="GET")), 503,
                                 "overloaded")
        assert int(headers["retry-after"]) >= 1
        for _ in range(20):
            assert status_of(exchange(server, request_head("/healthz", {}, method="GET"))) == 503
        assert server.log().count("refused") <= 2, server.log()[-3000:]
    finally:
        for sock in busy:
            sock.close()
