"""A WebSocket handshake gets the app's plain-HTTP answer (the JSON error shape and the security
headers for a refusal) also where the server hands the app the handshake: plain `uvicorn`, and
Starlette's TestClient. (`weedscan serve`'s own protocol: tests/robustness/test_protocol_refusals.py.)"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from serving.api.app import create_app
from serving.config import Settings
from tests.serving.conftest import free_port

HANDSHAKE = ("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "X-Request-ID: ws-1\r\n\r\n")


@pytest.fixture(scope="module")
def plain_uvicorn(shipped_model: Path) -> Iterator[int]:
    """The app under uvicorn's own protocols (WebSocket support on), as
    `uvicorn --factory serving.api.app:create_app_from_env` serves it; its port."""
    port = free_port()
    config = uvicorn.Config(create_app(Settings(model=shipped_model)), host="127.0.0.1", port=port,
                            log_level="warning", ws="auto")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield port
    server.should_exit = True
    thread.join(10)


def handshake(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(HANDSHAKE.format(path=path).encode())
        answer = b""
        while chunk := sock.recv(65536):  # the server closes the connection after its answer
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("path, status, code", [("/ws", 404, "not_found"),
                                                ("/v1/detect", 405, "method_not_allowed")])
def test_a_handshake_gets_the_json_refusal_under_plain_uvicorn(plain_uvicorn: int, path: str,
                                                               status: int, code: str) -> None:
    got, headers, body = handshake(plain_uvicorn, path)
    assert got == status, body  # uvicorn alone answers a bare 403 with no body
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == code
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff" and headers["x-request-id"] == "ws-1"


def test_a_handshake_to_a_route_gets_its_plain_answer(plain_uvicorn: int) -> None:
    got, _, body = handshake(plain_uvicorn, "/healthz")
    assert got == 200 and json.loads(body) == {"status": "ok"}


def test_a_handshake_in_process(client: TestClient) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/ws"):
        pass
    assert denied.value.status_code == 404 and denied.value.json()["error"]["code"] == "not_found"
