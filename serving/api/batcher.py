"""Micro-batching of camera frames on the inference lane, as Triton's dynamic batcher does
with no queue delay: when the lane is free for a frame, it takes every frame queued by then (up
to WEEDSCAN_MAX_FRAME_BATCH) and runs them as one ONNX Runtime batch per input shape. A lone
client is never made to wait for company, so its latency is that of a single frame; concurrent
clients get more images/s than with single runs, for a larger ONNX Runtime arena (the figures
per batch size: `benchmarks/RESULTS.md`, throughput). Answers are those of each frame alone
(Detector.detect_frames).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.detector import DetectOptions, Detector
from serving.errors import NotReady
from serving.green import GreenDetector
from serving.imaging import decode_image
from serving.result import DetectionResult

FrameAnswer = tuple[np.ndarray, float, DetectionResult]  # image, decode seconds, result


@dataclass
class _Frame:
    detector: Detector | GreenDetector
    data: bytes
    options: DetectOptions
    future: asyncio.Future[FrameAnswer]
    loop: asyncio.AbstractEventLoop
    decode_s: float = 0.0


_Decoded = tuple[_Frame, np.ndarray]  # a frame and its decoded image


class FrameBatcher:
    """Frames wait in a queue; every frame adds one call to the lane, and a call takes all the
    frames queued by then (a call that finds the queue empty returns at once)."""

    def __init__(self, submit: Callable[[Callable[[], None]], Future[Any]], max_pixels: int,
                 max_batch: int) -> None:
        self._submit = submit  # runs a callable on the inference lane (one thread, in order)
        self._max_pixels = max_pixels
        self._max_batch = max_batch
        self._queue: deque[_Frame] = deque()
        self._lock = threading.Lock()

    async def detect(self, detector: Detector | GreenDetector, data: bytes,
                     options: DetectOptions) -> FrameAnswer:
        loop = asyncio.get_running_loop()
        frame = _Frame(detector, data, options, loop.create_future(), loop)
        with self._lock:
            self._queue.append(frame)
        try:
            self._submit(self._run_queued)
        except RuntimeError as exc:  # the lane has been shut down
            with self._lock:
                if frame in self._queue:
                    self._queue.remove(frame)
            raise NotReady("the server is shutting down") from exc
        return await frame.future

    def fail_queued(self, exc: Exception) -> None:
        """Answer every frame still queued with `exc` (the lane is shutting down)."""
        with self._lock:
            frames, self._queue = list(self._queue), deque()
        for frame in frames:
            _settle(frame, exc)

    # --- on the inference lane ------------------------------------------------------------------
    def _run_queued(self) -> None:
        with self._lock:
            frames = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
        frames = [f for f in frames if not f.future.cancelled()]  # their clients have gone
        batch: list[tuple[Detector, _Decoded]] = []
        for frame in frames:
            start = time.perf_counter()
            try:
                image = decode_image(frame.data, self._max_pixels)
            except Exception as exc:  # noqa: BLE001 - this frame's error, not the others'
                _settle(frame, exc)
                continue
            frame.decode_s = time.perf_counter() - start
            height, width = image.shape[:2]
            detector = frame.detector
            if (isinstance(detector, Detector) and detector.dynamic_batch
                    and not detector.tiles(width, height, frame.options)):
                batch.append((detector, (frame, image)))
            else:  # green mode, a tiled frame or a fixed-batch model: on its own
                self._detect_alone(frame, image)
        for detector, group in _by_detector(batch):
            if len(group) == 1:
                self._detect_alone(*group[0])
                continue
            try:
                results = detector.detect_frames([image for _, image in group],
                                                 [frame.options for frame, _ in group])
            except Exception as exc:  # noqa: BLE001 - every frame of the batch gets the error
                for frame, _ in group:
                    _settle(frame, exc)
                continue
            for (frame, image), result in zip(group, results):
                _settle(frame, (image, frame.decode_s, result))

    @staticmethod
    def _detect_alone(frame: _Frame, image: np.ndarray) -> None:
        try:
            result = frame.detector.detect(image, frame.options)
        except Exception as exc:  # noqa: BLE001
            _settle(frame, exc)
            return
        _settle(frame, (image, frame.decode_s, result))


def _by_detector(batch: list[tuple[Detector, _Decoded]]) -> list[tuple[Detector, list[_Decoded]]]:
    groups: dict[int, tuple[Detector, list[_Decoded]]] = {}
    for detector, decoded in batch:
        groups.setdefault(id(detector), (detector, []))[1].append(decoded)
    return list(groups.values())


def _settle(frame: _Frame, outcome: FrameAnswer | Exception) -> None:
    """Hand the answer, or the error, to the frame's event loop (from the lane thread)."""
    def deliver() -> None:
        if frame.future.done():  # cancelled meanwhile: its client has gone
            return
        if isinstance(outcome, Exception):
            frame.future.set_exception(outcome)
        else:
            frame.future.set_result(outcome)

    try:
        frame.loop.call_soon_threadsafe(deliver)
    except RuntimeError:  # the loop has closed: nobody waits for this answer any more
        pass
