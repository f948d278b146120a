"""Query parameters cannot make the merge of a tiled photo's boxes dear: with every box kept
(`conf=0&iou=1&max_det=1000`) the merge compares only the surest boxes (TileSlicer's
candidates_per_box x max_det), whatever the windows found; such requests are answered over a real
server. What they cost against a plain request is measured in benchmarks/bench_merge_cost.py."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from serving import tiling
from serving.detections import Detections
from tests import images
from tests.serving.conftest import LiveServer

PHOTO = images.encode(images.field_like(3264, 2448), ".jpg")  # 21 model runs, tiled
EVERY_BOX = [{"conf": 0, "iou": 1, "max_det": 1000}, {"conf": 0, "iou": 0.99, "max_det": 1000}]


def test_the_merge_compares_only_the_surest_boxes(monkeypatch: pytest.MonkeyPatch) -> None:
    slicer = tiling.TileSlicer(tile=640)
    width, height = 3264, 2448
    windows = slicer.windows(width, height)
    rng = np.random.default_rng(0)
    parts = []
    for x0, y0, _, _ in windows:  # 60 sure weeds per window, each at the window's top-left seams
        corner = rng.uniform(0, 20, (60, 2)) + (x0, y0)
        boxes = np.hstack([corner, corner + rng.uniform(20, 40, (60, 2))]).astype(np.float32)
        parts.append(Detections(boxes, rng.uniform(0.6, 1.0, 60).astype(np.float32), np.ones(60, np.int64)))
    compared: list[int] = []
    real = tiling.agreement_in_overlap

    def counting(box: np.ndarray, window: np.ndarray, others: np.ndarray, frames: np.ndarray) -> np.ndarray:
        compared.append(len(others))
        return real(box, window, others, frames)

    monkeypatch.setattr(tiling, "agreement_in_overlap", counting)
    max_det = 20
    merged = slicer.merge(parts, windows, width, height, iou=1.0, max_det=max_det)
    assert len(merged) <= max_det
    assert compared, "the boxes cut by seams were compared"
    # Without the bound a box would be compared with every other window's: over a thousand.
    assert max(compared) < slicer.candidates_per_box * max_det, max(compared)
    assert sum(len(p) for p in parts) > 10 * slicer.candidates_per_box * max_det


@pytest.mark.parametrize("params", EVERY_BOX, ids=["iou=1", "iou=0.99"])
def test_every_box_requests_are_answered_over_http(live: LiveServer, params: dict[str, float]) -> None:
    response = httpx.post(f"{live.url}/v1/detect", params=params, content=PHOTO, timeout=300,
                          headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200, response.text
    assert len(response.json()["detections"]) <= params["max_det"]
