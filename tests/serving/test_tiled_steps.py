"""A big tiled photo runs as steps of at most TilingConfig.max_batch tiles: the same
answer as one pass, less memory held by ONNX Runtime, and frames that arrive meanwhile are
answered between its steps instead of after the whole photo."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
from pathlib import Path

import numpy as np
import pytest

from serving.api.metrics import Metrics
from serving.api.service import InferenceService
from serving.config import Settings
from serving.detector import DetectOptions, Detector, TilingConfig
from serving.tiling import TileSlicer
from tests import images

PHOTO = images.field_like(3264, 2448, seed=3)
FRAME = images.field_like(640, 480, seed=4)


@pytest.fixture(scope="module")
def detector(shipped_model: Path) -> Detector:
    detector = Detector(shipped_model, threads=1)
    detector.warmup()
    return detector


def test_steps_are_runs_of_max_batch_tiles_and_the_answer_is_one_passs(detector: Detector) -> None:
    options = DetectOptions(tile="on", conf=0.05)
    slicer = TileSlicer(round(detector.input_size * detector.tiling.tile_scale), detector.tiling.overlap)
    windows = len(slicer.windows(PHOTO.shape[1], PHOTO.shape[0]))
    assert windows > detector.tiling.max_batch, "the photo must need several runs"
    runs: list[int] = []
    original = detector.forward
    detector.forward = lambda batch: (runs.append(len(batch)), original(batch))[1]  # type: ignore[method-assign]
    try:
        steps = detector.detect_steps(PHOTO, options)
        pauses = 0
        while True:
            try:
                next(steps)
                pauses += 1
            except StopIteration as done:
                stepped = done.value
                break
    finally:
        del detector.forward
    assert runs == [min(detector.tiling.max_batch, windows - i)
                    for i in range(0, windows, detector.tiling.max_batch)]
    assert pauses == math.ceil(windows / detector.tiling.max_batch)  # the merge is a step too
    one_pass = dataclasses.replace(detector.tiling, max_batch=windows)
    detector.tiling, kept = one_pass, detector.tiling
    try:
        whole = detector.detect(PHOTO, options)
    finally:
        detector.tiling = kept
    assert len(whole.detections.boxes) > 0
    np.testing.assert_allclose(stepped.detections.boxes, whole.detections.boxes, atol=1e-3)
    np.testing.assert_allclose(stepped.detections.scores, whole.detections.scores, atol=1e-5)
    assert TilingConfig().max_batch == 4


def test_a_frame_is_answered_between_the_steps_of_a_big_photo(shipped_model: Path,
                                                              detector: Detector) -> None:
    """Deterministic: the frame is sent once the photo's first run of tiles has begun, so it
    is queued behind that run; with the photo as one job it would come back after it."""
    service = InferenceService(Settings(model=shipped_model, threads=1), Metrics(), detector)
    service.load()
    first_run = threading.Event()
    original = detector.forward
    detector.forward = lambda batch: (first_run.set(), original(batch))[1]  # type: ignore[method-assign]

    async def scenario() -> list[str]:
        finished: list[str] = []

        async def run(name: str, data: bytes, options: DetectOptions) -> None:
            with service.admit():
                await service.detect_bytes(data, options)
            finished.append(name)

        photo = asyncio.create_task(run("photo", images.encode(PHOTO, ".jpg"), DetectOptions(tile="on")))
        assert await asyncio.to_thread(first_run.wait, 120)
        await run("frame", images.encode(FRAME, ".jpg"), DetectOptions(tile="off"))
        await photo
        return finished

    try:
        assert asyncio.run(scenario()) == ["frame", "photo"]
    finally:
        del detector.forward
        service.close()
