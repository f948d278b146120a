"""Micro-batching on the inference lane (serving/api/batcher.py): frames queued together run as
one batch with each frame's own options and answer; a bad frame fails alone; a lone frame is
never held back; a shutdown answers the queued frames."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from serving.api.metrics import Metrics
from serving.api.service import InferenceService
from serving.config import Settings
from serving.detector import DetectOptions, Detector
from serving.errors import ClientError, NotReady
from tests import images

FRAMES = [images.encode(images.field_like(640, 480, seed=s), ".jpg") for s in range(3)]
OPTIONS = [DetectOptions(conf=0.01), DetectOptions(conf=0.3, classes=(1,)), DetectOptions(conf=0.01, max_det=2)]
BROKEN = b"\xff\xd8 not a jpeg at all" * 10


@pytest.fixture()
def service(shipped_model: Path) -> InferenceService:
    service = InferenceService(Settings(model=shipped_model, threads=1, max_frame_batch=4), Metrics())
    service.load()
    yield service
    service.close()


def spy_batches(service: InferenceService) -> list[int]:
    detector = service.detector
    sizes: list[int] = []
    original = detector.detect_frames
    detector.detect_frames = lambda frames, options: (sizes.append(len(frames)),  # type: ignore[method-assign]
                                                      original(frames, options))[1]
    return sizes


def test_frames_queued_together_run_as_one_batch_with_their_own_answers(service: InferenceService) -> None:
    sizes = spy_batches(service)
    lane_free = threading.Event()

    async def scenario() -> list[object]:
        service._executor.submit(lane_free.wait)  # the lane is busy while the frames arrive
        tasks = [asyncio.create_task(service.detect_bytes(data, opts)) for data, opts in zip(FRAMES, OPTIONS)]
        tasks.insert(1, asyncio.create_task(service.detect_bytes(BROKEN, DetectOptions())))
        await asyncio.sleep(0.2)  # every request has queued its frame
        lane_free.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    answers = asyncio.run(scenario())
    assert sizes == [3], "the three good frames in one run"
    broken = answers.pop(1)
    assert isinstance(broken, ClientError) and broken.code == "undecodable_image", broken
    alone = Detector(service.settings.model, threads=1)
    for opts, answer in zip(OPTIONS, answers):
        result, image = answer
        expected = alone.detect(image, opts)
        assert result.to_dict()["detections"] == expected.to_dict()["detections"]
        assert result.to_dict()["weed_cover"] == expected.to_dict()["weed_cover"]
    assert any(len(a[0].detections.scores) for a in answers)


def test_a_lone_frame_runs_at_once_on_its_own(service: InferenceService) -> None:
    sizes = spy_batches(service)

    async def one_after_another() -> None:
        for data in FRAMES:
            await service.detect_bytes(data, DetectOptions())

    asyncio.run(one_after_another())
    assert sizes == [], "no batch of one: each frame went straight through detect()"


def test_a_shutdown_answers_the_queued_frames(service: InferenceService) -> None:
    lane_free = threading.Event()

    async def scenario() -> BaseException | None:
        service._executor.submit(lane_free.wait)
        task = asyncio.create_task(service.detect_bytes(FRAMES[0], DetectOptions()))
        await asyncio.sleep(0.1)
        service.close()
        lane_free.set()
        try:
            await asyncio.wait_for(task, 30)
        except BaseException as exc:  # noqa: BLE001 - the error is the point
            return exc
        return None

    error = asyncio.run(scenario())
    assert isinstance(error, NotReady), error
