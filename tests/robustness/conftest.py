"""Shared pieces of the robustness tests: a live server that logs to a file, RSS, the clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.serving.conftest import LiveServer, make_client, wait_ready


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc; psutil elsewhere)."""
    status = Path(f"/proc/{pid}/status")
    if status.is_file():
        for line in status.read_text(encoding="utf-8").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    import psutil  # only where /proc is missing

    return psutil.Process(pid).memory_info().rss


@pytest.fixture(scope="module")
def inproc(shipped_model: Path) -> Iterator[TestClient]:
    with make_client(shipped_model) as client:
        wait_ready(client.get)
        yield client


@pytest.fixture(scope="session")
def live(shipped_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real server with the default settings for every test (of a test process) that does not
    change its state; its TMPDIR is a folder of its own that must stay empty."""
    log_dir = tmp_path_factory.mktemp("live")
    tmpdir = log_dir / "tmp"
    tmpdir.mkdir()
    # The access log is on (it is off by default): the leak tests need every line there could be.
    server = LiveServer(shipped_model, env={"WEEDSCAN_THREADS": "1", "TMPDIR": str(tmpdir),
                                            "WEEDSCAN_ACCESS_LOG": "true"},
                        log_path=log_dir / "server.log")
    server.tmpdir = tmpdir  # type: ignore[attr-defined]
    yield server
    log = server.stop()
    assert "Traceback" not in log and "internal_error" not in log, log[-4000:]
