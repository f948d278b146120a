from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.api.app import create_app
from serving.config import Settings


class ServerExited(RuntimeError):
    """The server process ended before it became ready."""


def wait_ready(get: Callable[[str], Any], timeout: float = 60.0, alive: Callable[[], bool] = lambda: True) -> None:
    """Poll GET /readyz (`get`: a client's .get) until it answers 200; `alive` False: give up now."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if not alive():
            raise ServerExited("the server exited before it became ready")
        time.sleep(0.05)
    raise TimeoutError("the service did not become ready")


def make_client(model: Path, **settings: object) -> TestClient:
    app = create_app(Settings(model=model, **settings))
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


# `weedscan serve` as the serving-only install runs it: the root CLI, which imports no training code.
SERVE = [sys.executable, "-m", "weedscan_cli", "serve"]
PORT_ATTEMPTS = 3


class LiveServer:
    """A real `weedscan serve` process on loopback. Its output goes to a file, not a pipe: a pipe
    nobody reads fills up after a few hundred access-log lines and blocks the server."""

    def __init__(self, model: Path | None, env: dict[str, str] | None = None,
                 log_path: Path | None = None, args: list[str] | None = None) -> None:
        """`model` None: the server's own choice (the models folder's active model); `args`:
        more `weedscan serve` options (`--models-dir DIR`, `--workers N`). The environment is
        the caller's (in the suite, one inference thread), then `env`."""
        self._own_log = log_path is None  # a temporary file, removed once the server stops
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix="weedscan-server-", suffix=".log")
            os.close(handle)
            log_path = Path(name)
        self.log_path = log_path
        self._final_log: str | None = None
        command = [*SERVE, *(["--model", str(model)] if model is not None else []), *(args or [])]
        env = {**os.environ, **(env or {})}
        # A free port can be taken by another test process between asking and binding: try again.
        for attempt in range(PORT_ATTEMPTS):
            self._start(command, env)
            try:
                wait_ready(self.http.get, timeout=120, alive=lambda: self.process.poll() is None)
                return
            except ServerExited:
                log = self.stop()
                if "address already in use" not in log.lower() or attempt == PORT_ATTEMPTS - 1:
                    raise ServerExited(f"the server exited before it became ready:\n{log[-4000:]}") from None
            except TimeoutError:
                self.stop()
                raise

    def _start(self, command: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._final_log = None
        self._log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([*command, "--host", "127.0.0.1", "--port", str(self.port)],
                                        env=env, stdout=self._log, stderr=subprocess.STDOUT, text=True)
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def log(self) -> str:
        if self._final_log is not None:
            return self._final_log
        self._log.flush()
        return self.log_path.read_text(errors="replace", encoding="utf-8")

    def stop(self) -> str:
        """Stop the server (again: nothing more to do); returns everything it logged."""
        if self._final_log is not None:
            return self._final_log
        self.http.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self._final_log = self.log_path.read_text(errors="replace", encoding="utf-8")
        if self._own_log:
            self.log_path.unlink(missing_ok=True)
        return self._final_log


@pytest.fixture(scope="module", params=["in-process", "live-server"])
def http(request: pytest.FixtureRequest) -> TestClient | httpx.Client:
    """The same checks twice: in process (TestClient) and through a real server over HTTP."""
    if request.param == "in-process":
        return request.getfixturevalue("client")
    return request.getfixturevalue("live_server").http
