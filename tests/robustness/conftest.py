"""Shared pieces of the robustness tests: a live server that logs to a file, RSS, the clients."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.serving.conftest import LiveServer, free_port, make_client, wait_ready


class LoggedServer(LiveServer):
    """LiveServer whose output goes to a file instead of a pipe: a pipe nobody reads fills up after
    a few hundred access-log lines and blocks the server; a file can also be read while it runs."""

    def __init__(self, model: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, "WEEDSCAN_THREADS": "1", **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "training.cli", "serve", "--model", str(model),
             "--host", "127.0.0.1", "--port", str(self.port)],
            env=full_env, stdout=self._log, stderr=subprocess.STDOUT, text=True)
        self.http = httpx.Client(base_url=self.url, timeout=60)
        try:
            wait_ready(self.http.get, timeout=120)
        except TimeoutError:
            self.stop()
            raise

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> str:
        self.http.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.log_path.read_text(errors="replace")


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc; psutil elsewhere)."""
    status = Path(f"/proc/{pid}/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    import psutil  # only where /proc is missing

    return psutil.Process(pid).memory_info().rss


@pytest.fixture(scope="module")
def inproc(shipped_model: Path) -> Iterator[TestClient]:
    with make_client(shipped_model) as client:
        wait_ready(client.get)
        yield client


@pytest.fixture(scope="module")
def live(shipped_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedServer]:
    """One real server per module; its TMPDIR is a folder of its own that must stay empty."""
    log_dir = tmp_path_factory.mktemp("live")
    tmpdir = log_dir / "tmp"
    tmpdir.mkdir()
    server = LoggedServer(shipped_model, log_dir / "server.log", env={"TMPDIR": str(tmpdir)})
    server.tmpdir = tmpdir  # type: ignore[attr-defined]
    yield server
    log = server.stop()
    assert "Traceback" not in log and "internal_error" not in log, log[-4000:]
