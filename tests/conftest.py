"""Shared fixtures: the shipped model, real images from ../shared when present; how many test
processes a run uses."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from serving.detector import Detector
    from tests.serving.conftest import LiveServer

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
SHIPPED_MODEL = REPO / "models" / "weedscan.onnx"
# Test processes for a run over folders (pyproject's `-n auto`): much of the suite waits on servers,
# subprocesses and timeouts rather than computing, so more processes than cores pay.
TEST_PROCESSES = 3
# What trains a model takes every core while it runs: these files run one after another in one
# test process (started first), not beside each other, where they would slow each other down.
TRAINING = ("tests/training/",)
# Idle OpenMP threads (torch's) sleep instead of spinning: beside other test processes on few
# cores, spinning threads take the CPU the others need. Speed only; results are the same.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("KMP_BLOCKTIME", "0")
# Servers and apps of the suite run one inference thread (their default: every core): several
# test processes share the cores already, and 2 threads per server beside them only contend.
os.environ.setdefault("WEEDSCAN_THREADS", "1")
ENGINE_CACHE = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """One OpenVINO compile cache for the whole run (its test processes inherit the variable):
    each server, CLI run and detector of the suite otherwise compiles the same model and shapes
    again. Removed at the end; a cache the caller set is used as it is."""
    if hasattr(config, "workerinput") or os.environ.get("WEEDSCAN_ENGINE_CACHE"):
        return
    folder = tempfile.mkdtemp(prefix="weedscan-test-engine-cache-")
    os.environ["WEEDSCAN_ENGINE_CACHE"] = folder
    config.stash[ENGINE_CACHE] = folder


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(ENGINE_CACHE, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop("WEEDSCAN_ENGINE_CACHE", None)


def trains(nodeid: str) -> bool:
    return nodeid.startswith(TRAINING)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: TEST_PROCESSES for the whole suite or a folder of it; one process (no workers)
    when the run names only files or tests, where starting workers would cost more than it saves.
    PYTEST_XDIST_AUTO_NUM_WORKERS overrides both."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    targets = [Path(arg.split("::")[0]) for arg in config.args] or [REPO / "tests"]
    return TEST_PROCESSES if any(target.is_dir() for target in targets) else 0


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`--dist loadfile`, except that the TRAINING files are one unit of work."""
    if config.option.dist != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class TrainingInOneProcess(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "training" if trains(nodeid) else super()._split_scope(nodeid)

    return TrainingInOneProcess(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The TRAINING files first, then files with a test marked `slow`, then the rest (their order
    otherwise kept): with several test processes, each takes whole files in this order, and the
    long ones should not start last."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: (not trains(item.nodeid), item.path not in slow_files))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "sesame" / "data.yaml").is_file():
        pytest.skip(f"public datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    assert SHIPPED_MODEL.is_file(), f"the shipped model {SHIPPED_MODEL} is missing"
    return SHIPPED_MODEL


@pytest.fixture(scope="session")
def live_server(shipped_model: Path) -> Iterator[LiveServer]:
    """One real `weedscan serve` with the default settings, shared by the tests of a test process
    (the serving and web ones) that do not change its state."""
    from tests.serving.conftest import LiveServer

    server = LiveServer(shipped_model)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def detector(shipped_model: Path) -> Detector:
    from serving.detector import Detector

    # The reference, ONNX Runtime fp32: what the comparisons with Ultralytics rest on (auto may run
    # the card's int8 variant on OpenVINO; tests/serving/test_engine*.py cover the other engines).
    return Detector(shipped_model, threads=1, engine="onnxruntime", precision="fp32")
