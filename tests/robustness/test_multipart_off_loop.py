"""Over real HTTP: multipart bodies are parsed off the event loop (a worker thread), so
a batch of countless tiny parts does not hold up /healthz; and a body of more parts than a batch
may carry is refused with 413."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.robustness.rawhttp import metric, nothing_received, open_socket, poll, read_response, request_head, status_of
from tests.serving.conftest import LiveServer

BOUNDARY = "b0undary"


def tiny_parts(count: int, name: str = "x") -> bytes:
    part = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\nx\r\n'.encode()
    return part * count + f"--{BOUNDARY}--\r\n".encode()


def post_batch(port: int, body: bytes):  # noqa: ANN201 - a socket
    sock = open_socket(port, timeout=120)
    sock.sendall(request_head("/v1/detect/batch", {
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        "Content-Length": str(len(body))}) + body)
    return sock


def test_healthz_answers_while_a_batch_of_tiny_parts_is_parsed(shipped_model: Path) -> None:
    body = tiny_parts(400_000)  # ~20 MB, ~3 s of parsing on this machine
    # The part cap (files + 16) is lifted so that the whole body is parsed.
    server = LiveServer(shipped_model, env={"WEEDSCAN_MAX_BATCH_FILES": "500000"})
    try:
        batch = post_batch(server.port, body)

        def body_read() -> bool:  # the whole body is held: parsing has started
            return metric(server.http.get("/metrics").text, "weedscan_request_body_bytes") == len(body)

        assert poll(body_read, attempts=300, pause=0.05)
        # Another connection, while the batch is parsed: answered first.
        assert httpx.get(f"{server.url}/healthz", timeout=60).status_code == 200
        assert nothing_received(batch), "the batch was answered before /healthz"
        answer = read_response(batch)
        assert status_of(answer) == 422, answer[:300]  # no 'images' field among the parts
        assert b"missing_field" in answer
        batch.close()
    finally:
        log = server.stop()
    assert "Traceback" not in log and "internal_error" not in log, log[-4000:]


def test_a_body_of_too_many_parts_gets_413(live: LiveServer) -> None:
    sock = post_batch(live.port, tiny_parts(5_000, name="images"))  # default cap: 32 + 16 parts
    answer = read_response(sock)
    assert status_of(answer) == 413, answer[:300]
    assert b"parts" in answer
    sock.close()
    single = httpx.post(f"{live.url}/v1/detect", content=tiny_parts(100, name="image"), timeout=60,
                        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert single.status_code == 413 and "parts" in single.json()["error"]["message"], single.text
