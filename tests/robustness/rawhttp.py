"""Raw loopback sockets for the tests that need what httpx will not send: stalled bodies, huge
or countless headers, silent connections."""

from __future__ import annotations

import re
import select
import socket
import time

from tests.netguard import is_loopback_host


def open_socket(port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> socket.socket:
    assert is_loopback_host(host), host  # these tests never leave the machine
    return socket.create_connection((host, port), timeout=timeout)


def request_head(path: str, headers: dict[str, str], method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def stalled_upload(port: int, declared: int = 100_000, sent: bytes = b"\xff\xd8") -> socket.socket:
    """A POST /v1/detect that declares `declared` bytes and sends only `sent` of them."""
    sock = open_socket(port)
    sock.sendall(request_head("/v1/detect", {"Content-Type": "image/jpeg",
                                             "Content-Length": str(declared)}) + sent)
    return sock


def read_until_closed(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """Everything the server sends until it closes the connection (or the socket times out,
    which fails the test: the server was expected to close)."""
    data = bytearray()
    while len(data) < limit:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:  # closed with bytes of ours unread: what came is all
            return bytes(data)
        if not chunk:
            return bytes(data)
        data += chunk
    raise AssertionError(f"the server sent over {limit} bytes without closing")


def status_of(response: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", response)
    assert match, response[:200]
    return int(match.group(1))


def nothing_received(sock: socket.socket) -> bool:
    """True while the server has neither answered nor closed this connection."""
    readable, _, _ = select.select([sock], [], [], 0)  # readable: an answer or EOF came
    return not readable


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " ") and not labels:
            return float(line.rsplit(" ", 1)[1])
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def poll(check, attempts: int = 100, pause: float = 0.2) -> bool:  # noqa: ANN001 - a callable
    """Wait, bounded, for `check()` to hold."""
    for _ in range(attempts):
        if check():
            return True
        time.sleep(pause)
    return False


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and a Content-Length body) on a connection that may stay open."""
    data = bytearray()
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return bytes(data)
        data += chunk
    head, _, _ = bytes(data).partition(b"\r\n\r\n")
    match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    want = len(head) + 4 + (int(match.group(1)) if match else 0)
    while len(data) < want:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return bytes(data)
