"""What the OpenVINO engine leaves behind in the process and on disk: its compile cache
(WEEDSCAN_ENGINE_CACHE: a second engine loads what the first compiled and answers the same; only
compiled models and a lock are written; processes compiling into one folder take turns; unset,
nothing is written) and the process locale (kept as it was)."""

from __future__ import annotations

import fcntl
import locale
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from serving.engines.openvino_engine import CACHE_ENV, COMPILE_LOCK, OpenVinoEngine, locale_kept
from tests.serving.test_engines import needs_openvino

pytestmark = needs_openvino

SHAPES = ((1, 3, 416, 416), (1, 3, 320, 416))


def files_under(folder: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}


def outputs_of(engine: OpenVinoEngine) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [engine.run(rng.random(shape, dtype=np.float32)) for shape in SHAPES]


def test_a_second_engine_loads_the_compiled_model_and_shapes_and_answers_the_same(
        shipped_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "engine-cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))

    first = OpenVinoEngine(str(shipped_model), "fp32", threads=1, idle_spin=False)
    first_outputs = outputs_of(first)
    written = files_under(cache)
    blobs = [path for path in written if path.name != COMPILE_LOCK]
    # One model per input shape met (the model with open shapes is compiled only when needed),
    # and the lock; nothing else (no image, no log).
    assert len(blobs) == len(SHAPES) and (cache / COMPILE_LOCK) in written
    assert {path.suffix for path in blobs} == {".blob"}
    assert oct(cache.stat().st_mode & 0o777) == oct(0o700)

    second = OpenVinoEngine(str(shipped_model), "fp32", threads=1, idle_spin=False)
    second_outputs = outputs_of(second)
    assert files_under(cache) == written, "the second engine compiled again instead of loading"
    for a, b in zip(first_outputs, second_outputs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_without_the_setting_nothing_is_written(shipped_model: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    outputs_of(OpenVinoEngine(str(shipped_model), "fp32", threads=1, idle_spin=False))
    assert [path.name for path in tmp_path.rglob("*")] == ["home"]


def test_a_folder_that_cannot_be_made_is_reported_and_the_engine_runs_without(
        shipped_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))
    with caplog.at_level(logging.WARNING, logger="weedscan.engines"):
        engine = OpenVinoEngine(str(shipped_model), "fp32", threads=1, idle_spin=False)
    assert f"{CACHE_ENV}={blocker / 'cache'} cannot be used" in caplog.text
    assert outputs_of(engine)[0].shape[0] == 1
    assert sorted(os.listdir(tmp_path)) == ["a-file"]


def test_a_locale_an_openvino_call_leaves_behind_is_undone() -> None:
    """compile_model sets the process locale to "C" and restores what it saved; two at once can
    each restore the other's "C". Whatever a call leaves, the locale is as it was afterwards."""
    before = locale.setlocale(locale.LC_ALL)
    assert before != "C", "the test needs a locale other than C (LANG=C.UTF-8 and the like)"
    with locale_kept():
        locale.setlocale(locale.LC_ALL, "C")  # what a call racing another leaves
    assert locale.setlocale(locale.LC_ALL) == before
    assert locale.getpreferredencoding(False) == "UTF-8"


def test_openvino_calls_take_turns() -> None:
    """One switch of the locale at a time: a call waits for the one in progress to finish."""
    inside: list[int] = []
    overlaps: list[int] = []

    def call() -> None:
        with locale_kept():
            inside.append(1)
            if len(inside) > 1:
                overlaps.append(len(inside))
            time.sleep(0.02)
            inside.pop()

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []


def test_a_compile_waits_while_another_process_compiles_into_the_same_cache(
        shipped_model: Path, tmp_path: Path) -> None:
    """A cached model is mapped from its file: one process must not load it while another is
    still writing it (workers starting together died of SIGBUS). Here the test holds the lock as
    a compiling process would; the engine of another process waits for it, then compiles."""
    cache = tmp_path / "engine-cache"
    cache.mkdir()
    script = ("import numpy as np; from serving.engines.openvino_engine import OpenVinoEngine; "
              f"engine = OpenVinoEngine({str(shipped_model)!r}, 'fp32', threads=1, idle_spin=False); "
              f"engine.run(np.zeros({SHAPES[0]}, np.float32)); print('compiled')")
    env = {**os.environ, CACHE_ENV: str(cache)}
    with open(cache / COMPILE_LOCK, "ab") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        other = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                other.wait(timeout=8)  # imports and reads the model, then waits for the lock
            assert not [path for path in cache.iterdir() if path.suffix == ".blob"]
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
    out, _ = other.communicate(timeout=120)
    assert other.returncode == 0 and out.strip() == "compiled"
    assert [path for path in cache.iterdir() if path.suffix == ".blob"]


def test_an_unwritable_cache_folder_is_not_used(shipped_model: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "read-only"
    cache.mkdir()
    monkeypatch.setenv(CACHE_ENV, str(cache))
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as a read-only mount answers (root writes anyway)
    with caplog.at_level(logging.WARNING, logger="weedscan.engines"):
        engine = OpenVinoEngine(str(shipped_model), "fp32", threads=1, idle_spin=False)
    assert "cannot be used (not writable)" in caplog.text
    assert outputs_of(engine)[0].shape[0] == 1
    assert list(cache.iterdir()) == []
