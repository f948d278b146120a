"""Over real HTTP: admission by cost. A 1 KB RLE BMP declares 36 MP; big images in
flight share a pixel budget (WEEDSCAN_MAX_INFLIGHT_PIXELS), so a flood of them gets 503 while a
normal frame is still admitted; a batch whose client has gone stops after the current item, and a
big photo's tiles stop after the current run."""

from __future__ import annotations

import struct
from pathlib import Path

import httpx

from tests import images
from tests.robustness.rawhttp import metric, open_socket, poll, read_response, request_head, status_of
from tests.serving.conftest import LiveServer

FRAME = images.encode(images.field_like(320, 240), ".jpg")
SIDE = 6000  # 36 MP from 1080 bytes


def rle_bmp(width: int = SIDE, height: int = SIDE) -> bytes:
    """An 8-bit RLE BMP whose pixel data is only 'end of bitmap': all black, tiny on the wire."""
    palette, data = b"\0" * 1024, b"\x00\x01"
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(data), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + palette + data


def pixels_in_flight(server: LiveServer) -> float:
    return metric(server.http.get("/metrics").text, "weedscan_inflight_pixels")


def post_raw(server: LiveServer, path: str, body: bytes, content_type: str):  # noqa: ANN201
    sock = open_socket(server.port, timeout=120)
    sock.sendall(request_head(path, {"Content-Type": content_type,
                                     "Content-Length": str(len(body))}) + body)
    return sock


def test_big_images_share_a_pixel_budget_and_frames_still_get_in(shipped_model: Path) -> None:
    server = LiveServer(shipped_model, env={"WEEDSCAN_THREADS": "1",
                                            "WEEDSCAN_MAX_INFLIGHT_PIXELS": "40000000"})
    try:
        huge = post_raw(server, "/v1/detect", rle_bmp(), "image/bmp")
        assert poll(lambda: pixels_in_flight(server) >= SIDE * SIDE, attempts=400, pause=0.02)
        # While it decodes and infers: more big images get 503, a frame is admitted.
        for _ in range(3):
            refused = httpx.post(f"{server.url}/v1/detect", content=rle_bmp(), timeout=60,
                                 headers={"Content-Type": "image/bmp"})
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "overloaded" and "Retry-After" in refused.headers
        frame = httpx.post(f"{server.url}/v1/detect", content=FRAME, timeout=120,
                           headers={"Content-Type": "image/jpeg"})
        assert frame.status_code == 200, frame.text
        answer = read_response(huge)
        assert status_of(answer) == 200, answer[:300]
        assert b'"width":6000' in answer.replace(b" ", b"")
        huge.close()
        assert pixels_in_flight(server) == 0
        # alone, a big image is admitted again
        again = httpx.post(f"{server.url}/v1/detect", content=rle_bmp(3000, 3000), timeout=120,
                           headers={"Content-Type": "image/bmp"})
        assert again.status_code == 200, again.text
    finally:
        log = server.stop()
    assert "Traceback" not in log and "internal_error" not in log, log[-4000:]


def test_a_batch_stops_when_its_client_leaves(shipped_model: Path) -> None:
    server = LiveServer(shipped_model, env={"WEEDSCAN_THREADS": "1"})
    try:
        boundary = "bmpbatch"
        part = (f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="x.bmp"\r\n'
                f"Content-Type: image/bmp\r\n\r\n").encode() + rle_bmp() + b"\r\n"
        count = 6
        body = part * count + f"--{boundary}--\r\n".encode()
        batch = post_raw(server, "/v1/detect/batch", body,
                         f"multipart/form-data; boundary={boundary}")
        assert poll(lambda: pixels_in_flight(server) >= SIDE * SIDE, attempts=400, pause=0.02)
        batch.close()  # the client gives up during the first item

        def stopped() -> bool:
            text = server.http.get("/metrics").text
            return metric(text, "weedscan_requests_total", route="/v1/detect/batch", status="499") == 1

        assert poll(stopped, attempts=300), server.http.get("/metrics").text
        text = server.http.get("/metrics").text
        assert metric(text, "weedscan_decode_seconds_count") <= 2 < count  # not all six
        assert metric(text, "weedscan_inflight_requests") == 0
        assert metric(text, "weedscan_inflight_pixels") == 0
    finally:
        log = server.stop()
    assert "Traceback" not in log and "internal_error" not in log, log[-4000:]


def test_a_big_photo_stops_when_its_client_leaves(shipped_model: Path) -> None:
    """Its tiles run in steps: a client that gives up (a robot's timeout, a closed tab) leaves
    no orphan work behind, which a retry would double."""
    server = LiveServer(shipped_model, env={"WEEDSCAN_THREADS": "1"})
    try:
        photo = post_raw(server, "/v1/detect", rle_bmp(8000, 8000), "image/bmp")
        assert poll(lambda: pixels_in_flight(server) >= 8000 * 8000, attempts=400, pause=0.02)
        photo.close()  # the client gives up during the first tiles

        def answered(status: str, text: str) -> float:
            return metric(text, "weedscan_requests_total", route="/v1/detect", status=status)

        assert poll(lambda: any(answered(s, server.http.get("/metrics").text) for s in ("200", "499")),
                    attempts=300), server.http.get("/metrics").text
        text = server.http.get("/metrics").text
        assert (answered("499", text), answered("200", text)) == (1, 0), "the photo ran to its end"
        assert metric(text, "weedscan_inflight_requests") == 0
        assert metric(text, "weedscan_inflight_pixels") == 0
        frame = server.http.post("/v1/detect", content=FRAME, headers={"Content-Type": "image/jpeg"})
        assert frame.status_code == 200
    finally:
        log = server.stop()
    assert "Traceback" not in log and "internal_error" not in log, log[-4000:]
