"""Thin images (long side >= 640x the short side) are answered, not a 500, alone or in
a batch, through a real server."""

from __future__ import annotations

import cv2
import numpy as np


def _png(width: int, height: int) -> bytes:
    return cv2.imencode(".png", np.full((height, width, 3), 90, np.uint8))[1].tobytes()


def test_thin_image_answered_alone_and_in_batch(live) -> None:  # noqa: ANN001
    thin = _png(1000, 1)
    r = live.http.post("/v1/detect", content=thin, headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    assert r.json()["image"] == {"width": 1000, "height": 1}
    files = [("images", ("thin.png", thin, "image/png")),
             ("images", ("tall.png", _png(1, 1000), "image/png")),
             ("images", ("ok.png", _png(64, 48), "image/png"))]
    r = live.http.post("/v1/detect/batch", files=files)
    assert r.status_code == 200, r.text
    assert [("error" in item) for item in r.json()["results"]] == [False, False, False]
