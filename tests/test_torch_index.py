"""tools/torch_index.py: the README's install commands add PyTorch's CPU index only on Linux
without an NVIDIA GPU and only where the index answers; the pins accept its `+cpu` builds."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import torch_index  # noqa: E402


class _Index(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200 if self.path == "/whl/cpu/torch/" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local_index() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
    server.shutdown()
    server.server_close()


def test_the_index_is_probed_over_http(local_index: str) -> None:
    assert torch_index.index_answers(local_index)
    assert not torch_index.index_answers(local_index.replace("/whl/cpu", "/elsewhere"))
    closed = local_index.rsplit(":", 1)[0] + ":9"  # discard port: nothing listens
    assert not torch_index.index_answers(closed, timeout=1)


@pytest.mark.parametrize(("gpu", "reachable", "platform", "added"), [
    (False, True, "linux", True),
    (True, True, "linux", False),      # the CUDA build is the right one
    (False, False, "linux", False),    # a mirror-only machine keeps its mirror's torch
    (False, True, "darwin", False),    # PyPI's macOS torch is already CPU-only
])
def test_the_cpu_index_is_added_only_where_it_pays(gpu: bool, reachable: bool, platform: str, added: bool) -> None:
    options = torch_index.pip_options(gpu, reachable, platform)
    assert options == (["--extra-index-url", torch_index.CPU_INDEX] if added else [])


def test_the_script_prints_pip_options_and_can_be_switched_off() -> None:
    env = {**os.environ, torch_index.NO_INDEX_ENV: "1"}
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "torch_index.py")], env=env,
                          capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout == ""


def test_the_pins_accept_the_cpu_builds() -> None:
    """pip picks the `+cpu` build only if the project's torch pins admit it and it sorts first."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    train = project["optional-dependencies"]["train"]
    for name in ("torch", "torchvision"):
        spec = next(SpecifierSet(r[len(name):].split(";")[0].strip()) for r in train
                    if r.startswith(name) and r[len(name)] in "<>=!~ ")
        newest = max((s.version for s in spec if s.operator in ("<=", "==")), key=Version)
        assert spec.contains(f"{newest}+cpu") and Version(f"{newest}+cpu") > Version(newest), name


def test_the_readme_install_commands_use_it() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "$(python3 tools/torch_index.py)" in text.split("```bash")[2]
