"""The server's ONNX Runtime threads rest between requests instead of busy-waiting for the next
(WEEDSCAN_SPIN_BETWEEN_REQUESTS); one-off and batch runs keep ONNX Runtime's default. The CPU the
two settings use between runs is measured in benchmarks/bench_idle_spin.py, not asserted here."""

from __future__ import annotations

from pathlib import Path

from serving.detector import Detector
from tests.serving.conftest import make_client, wait_ready

SPIN_STOP = "session.force_spinning_stop"


def _spin_stop_entry(detector: Detector) -> str | None:
    session = detector.engine.session  # type: ignore[attr-defined] - ONNX Runtime's engine
    try:
        return session.get_session_options().get_session_config_entry(SPIN_STOP)
    except RuntimeError:  # not set: ONNX Runtime's default (spin)
        return None


def test_a_resting_detector_tells_onnx_runtime_to_stop_spinning(shipped_model: Path) -> None:
    resting = Detector(shipped_model, threads=2, idle_spin=False, engine="onnxruntime")
    assert _spin_stop_entry(resting) == "1"
    spinning = Detector(shipped_model, threads=2, engine="onnxruntime")
    assert _spin_stop_entry(spinning) is None  # ONNX Runtime's default: spin


def test_the_server_rests_by_default_and_spins_on_request(shipped_model: Path) -> None:
    with make_client(shipped_model, engine="onnxruntime") as client:
        wait_ready(client.get)
        assert _spin_stop_entry(client.app.state.service.detector) == "1"
    with make_client(shipped_model, engine="onnxruntime", spin_between_requests=True) as client:
        wait_ready(client.get)
        assert _spin_stop_entry(client.app.state.service.detector) is None
