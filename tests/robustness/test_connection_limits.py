"""Over real HTTP: silent and slowloris connections are closed (head deadline),
open connections are capped (the longest-idle one makes room, never one whose next request is
already in), oversized or countless headers get 431, and the server keeps answering everyone else."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from serving.api import protocol
from serving.api.protocol import GuardedHttpToolsProtocol
from tests.robustness.rawhttp import open_socket, poll, read_response, read_until_closed, request_head, status_of
from tests.serving.conftest import LiveServer, free_port, wait_ready

HEAD_TIMEOUT_S = "1"
MAX_CONNECTIONS = 20


@pytest.fixture(scope="module")
def guarded(shipped_model: Path) -> Iterator[LiveServer]:
    server = LiveServer(shipped_model, env={"WEEDSCAN_HEADER_TIMEOUT_S": HEAD_TIMEOUT_S,
                                            "WEEDSCAN_MAX_HEADER_KB": "16",
                                            "WEEDSCAN_MAX_HEADERS": "50"})
    yield server
    log = server.stop()
    assert "Traceback" not in log, log[-4000:]


def healthz(server: LiveServer) -> int:
    """On a new connection, like a liveness probe."""
    return httpx.get(f"{server.url}/healthz", timeout=30).status_code


def test_silent_connections_are_closed(guarded: LiveServer) -> None:
    silent = [open_socket(guarded.port) for _ in range(30)]
    for sock in silent:
        assert read_until_closed(sock) == b""  # closed without a word (a 30 s socket timeout fails)
        sock.close()
    assert healthz(guarded) == 200


def test_a_slowloris_head_gets_408_and_is_closed(guarded: LiveServer) -> None:
    sock = open_socket(guarded.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    for i in range(300):  # a header line every 0.1 s, until the server answers
        if select.select([sock], [], [], 0.1)[0]:
            break
        sock.sendall(b"X-Slow-%d: a\r\n" % i)
    answer = read_until_closed(sock)
    assert status_of(answer) == 408 and b'"code":"request_timeout"' in answer, answer
    assert healthz(guarded) == 200


@pytest.mark.parametrize("headers, code", [
    ({"X-Big": "a" * 20_000}, "headers_too_large"),
    ({f"X-Many-{i}": "1" for i in range(60)}, "too_many_headers"),
], ids=["one-20-KB-header", "60-headers"])
def test_oversized_heads_get_431(guarded: LiveServer, headers: dict[str, str], code: str) -> None:
    sock = open_socket(guarded.port)
    sock.sendall(request_head("/healthz", headers, method="GET"))
    answer = read_until_closed(sock)
    assert status_of(answer) == 431 and f'"code":"{code}"'.encode() in answer, answer[:300]
    within = {"X-Fine": "a" * 8_000, **{f"X-F-{i}": "1" for i in range(30)}}
    assert httpx.get(f"{guarded.url}/healthz", headers=within, timeout=30).status_code == 200


def test_a_head_sent_without_end_is_cut_off_early(guarded: LiveServer) -> None:
    """16 MB of headers are not buffered: the server refuses and closes after the limit."""
    sock = open_socket(guarded.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    line = b"X-Pad: " + b"a" * 1000 + b"\r\n"
    sent = 0
    try:
        while sent < 16 << 20:
            sock.sendall(line * 64)
            sent += len(line) * 64
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server closed: what it had read was refused
    assert sent < 16 << 20  # it did not take them all
    answer = read_until_closed(sock)
    assert answer == b"" or status_of(answer) == 431, answer[:300]
    assert healthz(guarded) == 200


def test_idle_connections_over_the_cap_make_room(shipped_model: Path) -> None:
    server = LiveServer(shipped_model, env={"WEEDSCAN_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
                                            "WEEDSCAN_HEADER_TIMEOUT_S": "600"})
    try:
        idle = [open_socket(server.port) for _ in range(2 * MAX_CONNECTIONS)]
        assert [healthz(server) for _ in range(3)] == [200] * 3  # new clients get in
        # The oldest idle connections were closed to make room (server.http's keep-alive one,
        # which has completed requests, was spared): a prefix of them, at least cap + 1 long.
        must_close = 2 * MAX_CONNECTIONS - (MAX_CONNECTIONS - 1)
        pattern = "".join(
            "C" if select.select([sock], [], [], 5 if i < must_close else 0)[0] else "."
            for i, sock in enumerate(idle))
        closed = pattern.count("C")
        assert closed >= must_close and pattern == "C" * closed + "." * (len(idle) - closed), pattern
        assert server.http.get("/healthz").status_code == 200
        for sock in idle:
            sock.close()
    finally:
        log = server.stop()
    assert "Traceback" not in log, log[-4000:]


def test_an_idle_flood_past_the_file_limit_does_not_lock_out_new_clients(
        shipped_model: Path, tmp_path: Path) -> None:
    """Under `ulimit -n 300`, 400 idle sockets: the cap (200) keeps the server below its file
    limit, so accept() never fails and /healthz answers; serve warns that the limit is low."""
    port = free_port()
    log_path = tmp_path / "server.log"
    command = (f"ulimit -n 300 && exec {sys.executable} -m training.cli serve --model "
               f"{shipped_model} --host 127.0.0.1 --port {port}")
    env = {**os.environ, "WEEDSCAN_THREADS": "1", "WEEDSCAN_MAX_CONNECTIONS": "200",
           "WEEDSCAN_HEADER_TIMEOUT_S": "600"}
    with log_path.open("w", encoding="utf-8") as log:
        server = subprocess.Popen(["sh", "-c", command], env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    idle: list = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            wait_ready(http.get, timeout=120)
            idle = [open_socket(port) for _ in range(400)]
            assert [httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code
                    for _ in range(3)] == [200] * 3
    finally:
        for sock in idle:
            sock.close()
        server.terminate()
        server.wait(timeout=30)
    text = log_path.read_text(encoding="utf-8")
    assert "open-file limit" in text and "Traceback" not in text, text[-3000:]
    assert "accept" not in text.lower(), text[-3000:]  # no "socket.accept() out of resources"


async def answer_ok(scope: dict, receive: Callable, send: Callable) -> None:
    """The smallest app: reads the request, answers 200 (the protocol under test is in front)."""
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture()
def guarded_in_process() -> Iterator[tuple[uvicorn.Server, int]]:
    """`weedscan serve`'s protocol under uvicorn in this process (its connections inspectable)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(answer_ok, host="127.0.0.1", port=port, lifespan="off",
                                           http=GuardedHttpToolsProtocol, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert poll(lambda: server.started, attempts=200, pause=0.05)
    yield server, port
    server.should_exit = True
    thread.join(10)


def test_a_connection_whose_next_request_is_in_its_socket_is_not_closed_for_room(
        guarded_in_process: tuple[uvicorn.Server, int]) -> None:
    """A keep-alive client sends its next request as a newcomer over the cap arrives, and the
    event loop reads the newcomer first (a busy loop reads the request a turn later): the
    connection is no longer idle, so the newcomer gets the 503, and the request its answer
    rather than a reset."""
    server, port = guarded_in_process
    keep_alive = open_socket(port)
    keep_alive.sendall(request_head("/first", {}, method="GET"))
    assert status_of(read_response(keep_alive)) == 200
    newcomer = open_socket(port)
    assert poll(lambda: len(server.server_state.connections) == 2, pause=0.05)
    arrived = next(c for c in server.server_state.connections if c._completed == 0)
    on_loop, request_sent = threading.Event(), threading.Event()

    def over_the_cap() -> None:  # on the server's event loop, which reads nothing meanwhile
        on_loop.set()
        request_sent.wait(10)
        arrived._make_room()  # what a connection over the cap does when it arrives

    arrived.loop.call_soon_threadsafe(over_the_cap)
    assert on_loop.wait(10)
    keep_alive.sendall(request_head("/next", {}, method="GET"))
    time.sleep(0.2)  # in the server's socket, unread
    request_sent.set()
    assert status_of(read_response(keep_alive)) == 200
    refusal = read_until_closed(newcomer)
    assert status_of(refusal) == 503 and b'"code":"overloaded"' in refusal, refusal[:300]
    keep_alive.close()
    newcomer.close()


def test_a_connection_closed_for_room_before_its_first_request_reads_a_503(
        guarded_in_process: tuple[uvicorn.Server, int]) -> None:
    """A client that has connected but not yet sent its request when its connection makes room
    (many clients opening connections at once) reads a 503 with Retry-After, not an EOF."""
    server, port = guarded_in_process
    quiet = open_socket(port)
    newcomer = open_socket(port)
    assert poll(lambda: len(server.server_state.connections) == 2, pause=0.05)
    _, arrived = sorted(server.server_state.connections, key=lambda c: c._last_active)  # the quiet one first
    room_made = threading.Event()

    def over_the_cap() -> None:
        arrived._make_room()  # what a connection over the cap does when it arrives
        room_made.set()

    arrived.loop.call_soon_threadsafe(over_the_cap)
    assert room_made.wait(10)
    try:
        quiet.sendall(request_head("/late", {}, method="GET"))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the answer is already in the socket
    answer = read_until_closed(quiet)
    assert status_of(answer) == 503 and b'"code":"overloaded"' in answer, answer[:300]
    assert re.search(rb"(?i)\r\nretry-after: \d+", answer), answer[:300]
    newcomer.sendall(request_head("/first", {}, method="GET"))
    assert status_of(read_response(newcomer)) == 200  # the newcomer got the room
    quiet.close()
    newcomer.close()


@pytest.mark.parametrize(("soft_limit", "room"), [(300, 36), (250, 0), (100_000, 128)])
def test_lingering_connections_keep_within_the_open_file_limit(monkeypatch: pytest.MonkeyPatch,
                                                               soft_limit: int, room: int) -> None:
    """Connections answered with a refusal linger beside the cap's: only as many as the file
    limit leaves room for (200 connections and the server's own files), never over MAX_LINGERING."""
    monkeypatch.setattr(protocol.resource, "getrlimit", lambda _: (soft_limit, soft_limit))
    assert protocol.lingering_room(200) == room
