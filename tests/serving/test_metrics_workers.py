"""/metrics with several worker processes: every scrape counts all workers' requests, whichever
worker answers it; a worker killed mid-request (SIGKILL, out of memory) does not leave its
in-flight count in the totals for good; the shared folder goes with the server. Route labels name
every route."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.mmap_dict import MmapedDict

from serving.api.metrics import MULTIPROC_DIR_VARIABLE, Metrics, forget_dead_processes
from tests import images
from tests.serving.conftest import LiveServer

INFLIGHT = "weedscan_inflight_requests"


def inflight_total(text: str) -> float:
    match = re.search(rf"^{INFLIGHT} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def inflight_by_pid(folder: Path) -> dict[int, float]:
    """Each process's own in-flight count, read from its live-gauge file."""
    counts: dict[int, float] = {}
    for path in folder.glob("gauge_livesum_*.db"):
        try:
            values = MmapedDict.read_all_values_from_file(str(path))
        except (FileNotFoundError, ValueError):
            continue
        pid = int(path.stem.rsplit("_", 1)[1])
        counts[pid] = sum(value for key, value, *_ in values if json.loads(key)[0] == INFLIGHT)
    return counts


def holding_process(folder: Path, inflight: float) -> subprocess.Popen:
    """A process that keeps `inflight` requests in flight in the shared folder until killed."""
    script = textwrap.dedent(f"""
        from serving.api.metrics import Metrics
        metrics = Metrics()
        metrics.inflight.inc({inflight})
        metrics.requests.labels(route="/v1/detect", method="POST", status="200").inc()
        print("ready", flush=True)
        import time; time.sleep(600)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, MULTIPROC_DIR_VARIABLE: str(folder)})
    assert process.stdout.readline().strip() == "ready"
    return process


def test_a_killed_process_leaves_no_inflight_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    killed, alive = holding_process(tmp_path, 2), holding_process(tmp_path, 1)
    try:
        monkeypatch.setenv(MULTIPROC_DIR_VARIABLE, str(tmp_path))
        metrics = Metrics()
        assert inflight_total(metrics.exposition().decode()) == 3
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=10)
        text = metrics.exposition().decode()
        assert inflight_total(text) == 1  # the live one still counts
        assert 'route="/v1/detect",status="200"} 2.0' in text  # counters of the dead stay
        assert not list(tmp_path.glob(f"gauge_livesum_{killed.pid}.db"))
        assert forget_dead_processes(tmp_path) == []
    finally:
        for process in (killed, alive):
            process.kill()
            process.wait(timeout=10)


def big_slow_png() -> bytes:
    """A 6000x6000 photo-sized PNG: small on the wire, a few seconds of tiled inference."""
    image = np.full((6000, 6000, 3), (60, 110, 140), np.uint8)
    cv2.circle(image, (3000, 3000), 900, (40, 160, 40), -1)
    ok, png = cv2.imencode(".png", image)
    assert ok
    return png.tobytes()


JPEG = images.encode(images.field_like(640, 480), ".jpg")


def metrics_folder(server: LiveServer) -> Path:
    """The folder the server's workers add up their metrics in (it logs it at start)."""
    shared = re.search(r"add up their metrics in (\S+)", server.log())
    assert shared, server.log()
    return Path(shared.group(1))


@pytest.fixture(scope="module")
def two_workers(shipped_model: Path) -> Iterator[LiveServer]:
    """`weedscan serve` with two worker processes; its metrics folder must go when it stops."""
    server = LiveServer(shipped_model, env={"WEEDSCAN_WORKERS": "2", "WEEDSCAN_THREADS": "1"})
    shared = metrics_folder(server)
    yield server
    server.stop()
    assert not shared.exists(), "the shared metrics folder is removed when the server stops"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the workers in /proc")
def test_every_scrape_counts_the_requests_of_all_workers(two_workers: LiveServer) -> None:
    """Before the kill test below: it counts this server's requests from the start."""
    for _ in range(6):
        response = two_workers.http.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg"})
        assert response.status_code == 200
    pid = two_workers.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="utf-8").split()
    assert len(children) >= 2, "uvicorn should run two worker processes"
    assert metrics_folder(two_workers).is_dir()
    # Every scrape, whichever worker answers it (a new connection each), counts all six.
    detect_200 = 'weedscan_requests_total{method="POST",route="/v1/detect",status="200"} 6.0'
    for _ in range(6):
        text = httpx.get(f"{two_workers.url}/metrics").text
        assert detect_200 in text, text
        assert "weedscan_inflight_requests 0.0" in text
        assert re.search(r'weedscan_model_info\{[^}]*name="weedscan"', text), text


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the workers in /proc")
def test_serve_with_two_workers_forgets_a_killed_workers_inflight(two_workers: LiveServer) -> None:
    server = two_workers
    shared = metrics_folder(server)
    body = big_slow_png()

    def post() -> None:
        try:
            httpx.post(f"{server.url}/v1/detect?tile=on", content=body,
                       headers={"Content-Type": "image/png"}, timeout=60)
        except httpx.HTTPError:
            pass  # its worker is killed under it

    victim = None
    for _ in range(3):  # until a request is seen in flight in one worker's file
        sender = threading.Thread(target=post, daemon=True)
        sender.start()
        while sender.is_alive() and victim is None:
            victim = next((pid for pid, n in inflight_by_pid(shared).items() if n > 0), None)
            time.sleep(0.01)
        if victim is not None:
            break
    assert victim is not None, "no request was ever seen in flight"
    os.kill(victim, signal.SIGKILL)
    sender.join(timeout=60)
    deadline = time.monotonic() + 30
    text = ""
    while time.monotonic() < deadline:  # the other worker (or the restarted one) answers
        try:
            text = httpx.get(f"{server.url}/metrics", timeout=10).text
        except httpx.HTTPError:
            time.sleep(0.2)
            continue
        break
    assert INFLIGHT in text and inflight_total(text) == 0, text
    assert victim not in inflight_by_pid(shared)


def test_static_files_and_docs_have_their_route_label(client: TestClient) -> None:
    for url in ("/static/app.js", "/static/missing.js", "/docs", "/no/such/page"):
        client.get(url)
    text = client.get("/metrics").text
    assert 'method="GET",route="/static",status="200"}' in text
    assert 'method="GET",route="/static",status="404"}' in text
    assert 'method="GET",route="/docs",status="200"}' in text
    assert 'method="GET",route="unmatched",status="404"}' in text
    assert 'route="unmatched",status="200"' not in text
