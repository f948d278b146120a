"""The server's ONNX Runtime threads rest between requests instead of busy-waiting for the next
(WEEDSCAN_SPIN_BETWEEN_REQUESTS); one-off and batch runs keep ONNX Runtime's default."""

from __future__ import annotations

import time
from pathlib import Path

from serving.detector import Detector
from tests import images
from tests.serving.conftest import make_client, wait_ready

SPIN_STOP = "session.force_spinning_stop"


def _cpu_seconds_after_a_run(detector: Detector) -> float:
    """CPU this whole process uses in the 0.2 s after one detection (its threads included)."""
    detector.detect(images.field_like(640, 480))
    start = time.process_time()
    time.sleep(0.2)
    return time.process_time() - start


def test_resting_threads_use_no_cpu_after_a_run(shipped_model: Path) -> None:
    resting = Detector(shipped_model, threads=2, idle_spin=False)
    spinning = Detector(shipped_model, threads=2)
    resting.warmup()
    spinning.warmup()
    time.sleep(0.3)  # the warm-up's own spinning is over
    rest = _cpu_seconds_after_a_run(resting)
    assert rest < 0.02
    time.sleep(0.1)
    # ONNX Runtime's default, kept for back-to-back runs: a worker busy-waits ~50 ms (less CPU
    # when the cores are shared, so compared with the resting detector, not with a fixed time).
    spin = _cpu_seconds_after_a_run(spinning)
    assert spin > max(0.005, 4 * rest), (spin, rest)


def _spin_stop_entry(detector: Detector) -> str | None:
    try:
        return detector.session.get_session_options().get_session_config_entry(SPIN_STOP)
    except RuntimeError:  # not set: ONNX Runtime's default (spin)
        return None


def test_the_server_rests_by_default_and_spins_on_request(shipped_model: Path) -> None:
    with make_client(shipped_model) as client:
        wait_ready(client.get)
        assert _spin_stop_entry(client.app.state.service.detector) == "1"
    with make_client(shipped_model, spin_between_requests=True) as client:
        wait_ready(client.get)
        assert _spin_stop_entry(client.app.state.service.detector) is None
