from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.api.app import create_app
from serving.config import Settings


def wait_ready(get, timeout: float = 60.0) -> None:  # noqa: ANN001 - a client's .get
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError("the service did not become ready")


def make_client(model: Path, **settings: object) -> TestClient:
    app = create_app(Settings(model=model, threads=2, **settings))
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(shipped_model: Path) -> Iterator[TestClient]:
    with make_client(shipped_model) as c:
        wait_ready(c.get)
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A real `weedscan serve` process on loopback. Its output goes to a file, not a pipe: a pipe
    nobody reads fills up after a few hundred access-log lines and blocks the server."""

    def __init__(self, model: Path | None, env: dict[str, str] | None = None,
                 log_path: Path | None = None, args: list[str] | None = None) -> None:
        """`model` None: the server's own choice (the models folder's active model); `args`:
        more `weedscan serve` options (`--models-dir DIR`, `--workers N`)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix="weedscan-server-", suffix=".log")
            os.close(handle)
            log_path = Path(name)
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, "WEEDSCAN_THREADS": "2", **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "training.cli", "serve",
             *(["--model", str(model)] if model is not None else []), *(args or []),
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
        """Stop the server; returns everything it logged."""
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


@pytest.fixture(scope="module")
def live_server(shipped_model: Path) -> Iterator[LiveServer]:
    server = LiveServer(shipped_model)
    yield server
    server.stop()
