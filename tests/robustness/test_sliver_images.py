"""Slivers (a pixel or so by many thousands) are cut into hundreds of tiles from a few bytes on the
wire. Over a real server: their model runs are counted before decoding (over WEEDSCAN_MAX_TILES:
413 `too_many_tiles`), they cost the pixel budget what those runs cost (a second one gets 503
while one runs), and their tiles run in steps, so frames sent meanwhile are answered before the
sliver is."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np

from tests import images
from tests.robustness.rawhttp import metric, poll
from tests.serving.conftest import LiveServer

FRAME = images.encode(images.field_like(320, 240), ".jpg")
SLIVER_WIDTH = 100_000  # 151 model runs with the shipped model (416 px input, 832 px tiles)


def sliver(width: int, height: int = 1) -> bytes:
    return cv2.imencode(".png", np.full((height, width, 3), 90, np.uint8))[1].tobytes()


def post(server: LiveServer, data: bytes, media: str = "image/png") -> httpx.Response:
    return httpx.post(f"{server.url}/v1/detect", content=data, headers={"Content-Type": media},
                      timeout=300)


def test_slivers_are_bounded_and_let_frames_through(shipped_model: Path) -> None:
    server = LiveServer(shipped_model, env={"WEEDSCAN_THREADS": "1",
                                            "WEEDSCAN_MAX_INFLIGHT_PIXELS": "30000000"})
    try:
        for data in (sliver(1_000_000), sliver(1, 1_000_000)):  # ~1500 tiles from ~4 KB
            refused = post(server, data)
            assert refused.status_code == 413, refused.text
            error = refused.json()["error"]
            assert error["code"] == "too_many_tiles" and "WEEDSCAN_MAX_TILES" in error["message"]
        assert httpx.post(f"{server.url}/v1/detect", params={"tile": "off"}, content=sliver(1_000_000),
                          headers={"Content-Type": "image/png"}, timeout=120).status_code == 200

        answers: dict[str, tuple[float, int]] = {}

        def send_sliver() -> None:
            response = post(server, sliver(SLIVER_WIDTH))
            answers["sliver"] = (time.monotonic(), response.status_code)

        worker = threading.Thread(target=send_sliver)
        worker.start()
        assert poll(lambda: metric(server.http.get("/metrics").text, "weedscan_inflight_pixels")
                    >= SLIVER_WIDTH, attempts=400, pause=0.02)
        # Its 151 runs cost 26 M pixels of the 30 M budget: a second sliver waits its turn.
        second = post(server, sliver(SLIVER_WIDTH))
        assert second.status_code == 503 and second.json()["error"]["code"] == "overloaded"
        frame = post(server, FRAME, "image/jpeg")
        answered = time.monotonic()
        assert frame.status_code == 200, frame.text
        worker.join(timeout=300)
        assert answers["sliver"][1] == 200
        assert answered < answers["sliver"][0], "the frame waited for the whole sliver"
    finally:
        log = server.stop()
    assert "Traceback" not in log and "internal_error" not in log, log[-4000:]
