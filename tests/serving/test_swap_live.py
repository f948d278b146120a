"""Promotion and rollback under load, over real HTTP: keep-alive clients send camera frames at up
to 10 fps each while the active model is swapped 10 times; no request fails and answers come from
both models. Then: the choice survives a restart, and `--workers 2` agree.

The latency the swaps add is measured in benchmarks/bench_swap_latency.py, not asserted here.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests import images
from tests.serving.conftest import LiveServer
from tests.serving.registry_helpers import models_folder

pytestmark = pytest.mark.slow

CLIENTS = 4
FPS = 10.0
SWAPS = 10
FRAME = images.encode(images.field_like(320, 240, seed=3), ".jpg")
RAW = {"Content-Type": "image/jpeg"}


@dataclass
class Run:
    """What the clients saw: (sent at, latency s, model) per answer, and every failure."""

    answers: list[tuple[float, float, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def p99(self) -> float:
        return float(np.percentile([a[1] for a in self.answers], 99))


def robot(url: str, stop: threading.Event, run: Run) -> None:
    """One keep-alive connection, a frame every 1/FPS s (or as soon as the last was answered,
    when the server is slower than that: a robot never has two frames in flight)."""
    with httpx.Client(base_url=url, timeout=30) as http:
        next_at = time.monotonic()
        while not stop.is_set():
            sent = time.monotonic()
            try:
                response = http.post("/v1/detect", content=FRAME, headers=RAW)
                latency = time.monotonic() - sent
                if response.status_code != 200:
                    with run.lock:
                        run.failures.append(f"{response.status_code} {response.text[:200]}")
                else:
                    with run.lock:
                        run.answers.append((sent, latency, response.json()["model"]["name"]))
            except httpx.HTTPError as exc:
                with run.lock:
                    run.failures.append(repr(exc))
            next_at += 1 / FPS
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at, time.monotonic())


def drive(url: str, seconds: float, during: Callable[[], None] | None = None) -> Run:
    run, stop = Run(), threading.Event()
    threads = [threading.Thread(target=robot, args=(url, stop, run)) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)  # every client connected and sending
        with run.lock:
            run.answers.clear()
        if during is not None:
            during()
        else:
            time.sleep(seconds)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    return run


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models_folder(tmp_path_factory.mktemp("swap"), "weedscan-b")


@pytest.mark.parametrize("loaded", ["4", "1"], ids=["warm-swaps", "cold-swaps"])
def test_ten_swaps_under_load_fail_no_request(folder: Path, loaded: str) -> None:
    """warm: both models stay loaded, a swap after the first moves a pointer; cold: one model
    loaded at a time (WEEDSCAN_MAX_LOADED_MODELS=1), so every swap loads and warms a session
    while the frames keep coming, and unloads the old one once its requests are done."""
    server = LiveServer(None, args=["--models-dir", str(folder)],
                        env={"WEEDSCAN_MAX_LOADED_MODELS": loaded})
    try:
        swaps: list[tuple[float, float, str]] = []  # (asked at, answered at, model)

        def swap_ten_times() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as admin:
                for i in range(SWAPS):
                    name = "weedscan-b" if i % 2 == 0 else "weedscan"
                    asked = time.monotonic()
                    answer = admin.post(f"/v1/models/{name}/activate")
                    assert answer.status_code == 200 and answer.json()["active"] == name, answer.text
                    swaps.append((asked, time.monotonic(), name))
                    time.sleep(0.4)

        busy = drive(server.url, 0, during=swap_ten_times)
        log = server.stop()
    finally:
        server.stop()
    assert not busy.failures, busy.failures[:5]
    assert len(swaps) == SWAPS
    assert {a[2] for a in busy.answers} == {"weedscan", "weedscan-b"}
    # a frame sent after a swap was answered (and before the next was asked) comes from the new model
    for (_, done, name), (asked_next, _, _) in zip(swaps, [*swaps[1:], (float("inf"), 0, "")]):
        late = [a for a in busy.answers if done < a[0] and a[0] + a[1] < asked_next]
        assert all(a[2] == name for a in late), (name, [a[2] for a in late][:10])
    assert "Traceback" not in log, log[-3000:]


def test_the_active_model_survives_a_restart(folder: Path) -> None:
    server = LiveServer(None, args=["--models-dir", str(folder)])
    try:
        assert server.http.post("/v1/models/weedscan-b/activate").json()["active"] == "weedscan-b"
    finally:
        server.stop()
    again = LiveServer(None, args=["--models-dir", str(folder)])
    try:
        assert again.http.get("/v1/models").json()["active"] == "weedscan-b"
        answer = again.http.post("/v1/detect", content=FRAME, headers=RAW).json()
        assert answer["model"]["name"] == "weedscan-b"
        assert again.http.post("/v1/models/weedscan/activate").status_code == 200
    finally:
        again.stop()


def active_per_worker(http: httpx.Client) -> dict[str, str]:
    """pid -> the model each worker process has active, from /metrics."""
    found = {}
    for line in http.get("/metrics").text.splitlines():
        match = re.match(r'weedscan_model_info\{(.*)\} 1\.0$', line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            found[labels["pid"]] = labels["name"]
    return found


def test_two_workers_answer_with_the_same_model_after_a_swap(folder: Path) -> None:
    server = LiveServer(None, args=["--models-dir", str(folder), "--workers", "2"],
                        env={"WEEDSCAN_THREADS": "1"})
    try:
        deadline = time.monotonic() + 90
        while len(active_per_worker(server.http)) < 2:  # both workers up
            assert time.monotonic() < deadline, active_per_worker(server.http)
            time.sleep(0.2)
        assert set(active_per_worker(server.http).values()) == {"weedscan"}
        assert server.http.post("/v1/models/weedscan-b/activate").status_code == 200
        while set(active_per_worker(server.http).values()) != {"weedscan-b"}:
            assert time.monotonic() < deadline, active_per_worker(server.http)
            time.sleep(0.2)
        assert len(active_per_worker(server.http)) == 2
        for _ in range(10):  # fresh connections, whichever worker takes them
            answer = httpx.post(f"{server.url}/v1/detect", content=FRAME, headers=RAW, timeout=30)
            assert answer.json()["model"]["name"] == "weedscan-b"
        server.http.post("/v1/models/weedscan/activate")
    finally:
        server.stop()
