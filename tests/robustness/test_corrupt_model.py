"""A damaged model (its card's sha256 matching, or not) gives one clear error line
and no ONNX Runtime traceback: `serve` stays up and /readyz says why it is not ready; `detect`
and `batch` exit 2 with one `error:` line."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests import images
from tests.serving.conftest import free_port

CLI = [sys.executable, "-m", "training.cli"]


def damaged_model(shipped_model: Path, folder: Path, hash_matches: bool) -> Path:
    """The shipped model cut short, with its card (sha256 of the damaged bytes, or the old one)."""
    model = folder / ("matching.onnx" if hash_matches else "mismatched.onnx")
    data = shipped_model.read_bytes()[:300_000]
    model.write_bytes(data)
    card = json.loads(shipped_model.with_suffix(".json").read_text(encoding="utf-8"))
    if hash_matches:
        card["sha256"] = hashlib.sha256(data).hexdigest()
    model.with_suffix(".json").write_text(json.dumps(card), encoding="utf-8")
    return model


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_serve_with_a_damaged_model_says_why_on_readyz(shipped_model: Path, tmp_path: Path) -> None:
    model = damaged_model(shipped_model, tmp_path, hash_matches=True)
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("w", encoding="utf-8") as log:
        server = subprocess.Popen([*CLI, "serve", "--model", str(model), "--host", "127.0.0.1",
                                   "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        answer = None
        for _ in range(300):  # bounded: until /readyz reports the failure (not "loading")
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
                if "loading" not in answer.text:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert answer is not None and answer.status_code == 503, answer
        error = answer.json()["error"]
        assert error["code"] == "not_ready"
        assert "cannot load the model" in error["message"] and "damaged" in error["message"], error
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log_path.read_text(encoding="utf-8")
    assert "Traceback" not in text, text
    assert len([line for line in text.splitlines() if "the model did not load" in line]) == 1, text


@pytest.mark.parametrize("hash_matches", [True, False], ids=["hash-matches", "hash-mismatch"])
def test_detect_and_batch_with_a_damaged_model_give_one_error_line(
        shipped_model: Path, tmp_path: Path, hash_matches: bool) -> None:
    model = damaged_model(shipped_model, tmp_path, hash_matches)
    image = tmp_path / "frame.jpg"
    image.write_bytes(images.encode(images.field_like(160, 120), ".jpg"))
    for command in (["detect", str(image)],
                    ["batch", str(image), "--out", str(tmp_path / "out"), "--workers", "1",
                     "--no-progress"]):
        done = subprocess.run([*CLI, *command, "--model", str(model)], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2, (command, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        lines = error_lines(done.stderr)
        assert len(lines) == 1, done.stderr
        assert ("cannot load the model" in lines[0]) if hash_matches else ("sha256" in lines[0])
