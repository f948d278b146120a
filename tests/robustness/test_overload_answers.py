"""Overload over real HTTP (raw loopback sockets to a real `weedscan serve`, bounded in count and
time): every attempt gets an answer (a 503 with Retry-After, or a 200), never a reset or an EOF,
also at the connection cap while the load shedder holds early comers; a client that opens a new
connection per retry is held like one that retries on its connection; a flooder raises its own
Retry-After, not the other clients'; a flood of garbage requests is a few log lines."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import httpx

from tests import images
from tests.robustness.rawhttp import metric, nothing_received, open_socket, poll, request_head, status_of
from tests.robustness.test_pixel_admission import post_raw, rle_bmp
from tests.serving.conftest import LiveServer

FRAME = images.encode(images.field_like(320, 240), ".jpg")
ASK = request_head("/v1/detect", {"Content-Type": "image/jpeg", "Content-Length": str(len(FRAME))}) + FRAME


def answer_of(sock: socket.socket) -> bytes | str:
    """One whole response, or "reset" / "eof" when the connection ended without one."""
    data = bytearray()
    try:
        while True:
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", bytes(data[:head_end]))
                if len(data) >= head_end + 4 + (int(match.group(1)) if match else 0):
                    return bytes(data)
            chunk = sock.recv(65536)
            if not chunk:
                return "eof"
            data += chunk
    except ConnectionResetError:
        return "reset"


def not_dropped(holder: socket.socket) -> bool:
    """The holder's image is still being inferred (nothing came back), or came back a 200. Closing
    the holder afterwards stops its remaining work: no test waits for a 64 MP image."""
    if nothing_received(holder):
        return True
    answer = answer_of(holder)
    return isinstance(answer, bytes) and status_of(answer) == 200


def busy_server(shipped_model: Path, holders: int, **env: str) -> tuple[LiveServer, list[socket.socket]]:
    """A server on one thread whose `holders` slots are all taken by 64 MP images (seconds in
    flight each, run in steps on the one lane)."""
    server = LiveServer(shipped_model, env={
        "WEEDSCAN_THREADS": "1", "WEEDSCAN_MAX_INFLIGHT": str(holders),
        "WEEDSCAN_MAX_INFLIGHT_PIXELS": str(holders * 64_000_000), **env})
    held = [post_raw(server, "/v1/detect", rle_bmp(8000, 8000), "image/bmp") for _ in range(holders)]
    assert poll(lambda: metric(server.http.get("/metrics").text, "weedscan_inflight_requests") >= holders,
                attempts=600, pause=0.02)
    return server, held


def test_early_comers_near_the_connection_cap_all_get_answers(shipped_model: Path) -> None:
    """Clients that retry at once while two images take every slot, with few connections
    allowed: every attempt gets a 503 it can read (or a 200), and no request whose body is in
    is dropped to make room."""
    server, holders = busy_server(shipped_model, 2, WEEDSCAN_MAX_CONNECTIONS="16",
                                  WEEDSCAN_RETRY_AFTER_S="2", WEEDSCAN_RETRY_AFTER_MAX_S="6")
    held, answers = [], []
    try:
        for _ in range(30):  # 2 holders and the metrics client take 3 of the 16
            sock = open_socket(server.port, timeout=60)
            sock.sendall(ASK)
            first = answer_of(sock)
            answers.append(first)
            if not isinstance(first, bytes) or b"connection: close" in first.lower():
                sock.close()  # refused at the cap (or no answer: counted below)
                continue
            sock.sendall(ASK)  # at once, Retry-After ignored: held by the shedder
            held.append(sock)
        answers += [answer_of(sock) for sock in held]
        assert all(not_dropped(sock) for sock in holders), "an image in flight was dropped to make room"
        failed = [a for a in answers if not isinstance(a, bytes)]
        assert not failed, f"{len(failed)} of {len(answers)} attempts got no answer: {failed}"
        for answer in answers:
            assert status_of(answer) in (200, 503), answer[:300]
            if status_of(answer) == 503:
                assert re.search(rb"(?i)\r\nretry-after: \d+", answer), answer[:300]
    finally:
        for sock in held + holders:
            sock.close()
        log = server.stop()
    assert "Traceback" not in log and "internal_error" not in log, log[-4000:]


def test_a_refusal_at_the_cap_is_read_not_reset(shipped_model: Path) -> None:
    """Every connection has a whole request being inferred: a newcomer is refused at the cap.
    It sends a body of 600 KB anyway, as clients do before they read: the server reads and
    drops it after its 503 (a lingering close), so the client reads the 503 instead of a reset."""
    server = LiveServer(shipped_model, env={
        "WEEDSCAN_THREADS": "1", "WEEDSCAN_MAX_INFLIGHT": "3", "WEEDSCAN_MAX_CONNECTIONS": "3",
        "WEEDSCAN_MAX_INFLIGHT_PIXELS": str(3 * 64_000_000)})
    server.http.close()  # its keep-alive connection would be the one closed to make room
    holders = []
    try:
        for _ in range(3):
            holders.append(post_raw(server, "/v1/detect", rle_bmp(8000, 8000), "image/bmp"))
            time.sleep(0.3)
        newcomer = open_socket(server.port, timeout=60)
        time.sleep(0.5)  # refused and closed (before: at once) while it had sent nothing
        big = b"\xff\xd8" + bytes(600_000)
        try:
            newcomer.sendall(request_head("/v1/detect", {"Content-Type": "image/jpeg",
                                                         "Content-Length": str(len(big))}) + big)
            answer = answer_of(newcomer)
        except (BrokenPipeError, ConnectionResetError):
            answer = "reset while sending"
        newcomer.close()
        assert isinstance(answer, bytes), answer
        assert status_of(answer) == 503 and b"too many open connections" in answer, answer[:300]
        assert re.search(rb"(?i)\r\nretry-after: \d+", answer), answer[:300]
        assert all(not_dropped(sock) for sock in holders), "an image in flight was dropped to make room"
    finally:
        for sock in holders:
            sock.close()
        log = server.stop()
    assert "Traceback" not in log and "internal_error" not in log, log[-4000:]


def test_a_retry_on_a_new_connection_does_not_bypass_the_hold(shipped_model: Path) -> None:
    """A client that retries at once on a new connection each time: after its burst, its
    refusals are held for its address's turn, as a retry on the same connection is."""
    server, holders = busy_server(shipped_model, 1)
    try:
        statuses = []
        for _ in range(45):
            sock = open_socket(server.port, timeout=60)
            sock.sendall(ASK)
            answer = answer_of(sock)
            sock.close()
            assert isinstance(answer, bytes), answer
            statuses.append(status_of(answer))
        assert set(statuses) <= {200, 503}, statuses
        held = metric(server.http.get("/metrics").text, "weedscan_overload_holds_total")
        assert held >= 20, held  # 45 attempts, a burst of 20 immediate refusals
    finally:
        for sock in holders:
            sock.close()
        log = server.stop()
    assert "Traceback" not in log and "internal_error" not in log, log[-4000:]


def from_address(address: str) -> httpx.Client:
    """A client whose connections come from another loopback address (127.0.0.0/8)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=60)


def test_a_flooder_raises_its_own_retry_after_not_the_others(shipped_model: Path) -> None:
    # All upload memory held by one stalled upload: every other upload is refused (503) as its
    # first bytes arrive, deterministically.
    server = LiveServer(shipped_model, env={
        "WEEDSCAN_MAX_UPLOAD_MB": "1", "WEEDSCAN_MAX_BATCH_MB": "1", "WEEDSCAN_MAX_BODY_MEMORY_MB": "1",
        "WEEDSCAN_MAX_CLIENT_BODY_SHARE": "1", "WEEDSCAN_RETRY_AFTER_S": "1",
        "WEEDSCAN_RETRY_AFTER_MAX_S": "60"})
    try:
        holder = open_socket(server.port)
        holder.sendall(request_head("/v1/detect", {"Content-Type": "image/jpeg",
                                                   "Content-Length": "1048000"}) + b"\xff\xd8" + b"\0" * 1040000)
        body = {"content": b"\0" * 100_000, "headers": {"Content-Type": "image/jpeg"}}
        with from_address("127.0.0.2") as flooder, from_address("127.0.0.3") as polite:
            assert poll(lambda: flooder.post(f"{server.url}/v1/detect", **body).status_code == 503)
            told = []
            for _ in range(60):  # retries at once, Retry-After ignored
                refused = flooder.post(f"{server.url}/v1/detect", **body)
                assert refused.status_code == 503, refused.text
                told.append(int(refused.headers["Retry-After"]))
            answer = polite.post(f"{server.url}/v1/detect", **body)
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "overloaded"
        # the flooder is told to stay away long (its own refusals per answer, at the ceiling);
        # the polite client about as long as the clients refused per answer need
        assert min(told[-5:]) >= 20, told
        assert int(answer.headers["Retry-After"]) <= 12, answer.headers["Retry-After"]
        holder.close()
    finally:
        log = server.stop()
    assert "Traceback" not in log and "internal_error" not in log, log[-4000:]


def test_a_flood_of_garbage_requests_is_a_few_log_lines(shipped_model: Path) -> None:
    server = LiveServer(shipped_model)
    try:
        for _ in range(300):
            sock = open_socket(server.port)
            sock.sendall(b"GARBAGE\r\n\r\n")
            answer = answer_of(sock)
            sock.close()
            assert isinstance(answer, bytes) and status_of(answer) == 400, answer
        assert server.http.get("/healthz").status_code == 200
    finally:
        log = server.stop()
    assert 1 <= log.count("Invalid HTTP request received") <= 3, log[-4000:]
