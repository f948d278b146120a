"""`weedscan batch` when something dies: the driver (its workers go with it), a worker (exit 3),
the disk (exit 4). Every case leaves a run that a rerun resumes."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from serving.batch import outputs
from tests.batch.conftest import geotagged_jpeg
from tests.batch.helpers import error_lines, read_jsonl, run_cli
from tests.conftest import REPO

linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def children(pid: int) -> set[int]:
    """Live processes whose parent is `pid` (from /proc; zombies excluded)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def make_images(root: Path, count: int) -> Path:
    root.mkdir()
    for i in range(count):
        (root / f"img_{i:03d}.jpg").write_bytes(geotagged_jpeg(10 + i / 100, 20, 640, 480, seed=i))
    return root


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@contextmanager
def running_batch(root: Path, out: Path, workers: int = 2) -> Iterator[tuple[subprocess.Popen, set[int]]]:
    """A real `weedscan batch --workers N` that has recorded an image, and its worker PIDs."""
    command = [sys.executable, "-m", "training.cli", "batch", str(root), "--out", str(out),
               "--workers", str(workers), "--no-progress"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        log = out / outputs.JSONL
        started = wait_for(lambda: process.poll() is not None
                           or (log.is_file() and log.read_bytes().count(b"\n") >= 1), 120)
        assert started and process.poll() is None, "the batch ended before it could be interrupted"
        workers_found = children(process.pid)
        assert len(workers_found) >= workers, workers_found  # the pool's workers (+ resource tracker)
        yield process, workers_found
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


@linux_only
def test_workers_die_with_a_killed_driver(tmp_path: Path) -> None:
    root = make_images(tmp_path / "survey", 80)
    with running_batch(root, tmp_path / "out") as (process, workers):
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert wait_for(lambda: not any(alive(pid) for pid in workers), 15), \
            [pid for pid in workers if alive(pid)]


@linux_only
def test_without_prctl_a_worker_still_exits_when_its_parent_is_gone() -> None:
    """The portable fallback: the parent-PID watch (prctl is skipped as on macOS)."""
    child = ("import sys, time; from serving.batch.local_runner import die_with_parent; "
             "sys.platform = 'darwin'; die_with_parent(int(sys.argv[1])); "
             "print('watching', flush=True); time.sleep(120)")
    parent = ("import os, subprocess, sys, time; "
              f"p = subprocess.Popen([sys.executable, '-c', {child!r}, str(os.getpid())]); "
              "print(p.pid, flush=True); time.sleep(120)")
    process = subprocess.Popen([sys.executable, "-c", parent], cwd=REPO, stdout=subprocess.PIPE, text=True)
    orphan = int(process.stdout.readline())
    try:
        assert process.stdout.readline().strip() == "watching"
        assert alive(orphan)
        process.kill()
        process.wait(timeout=10)
        assert wait_for(lambda: not alive(orphan), 15), "the orphan outlived its parent"
    finally:
        process.kill()
        if alive(orphan):
            os.kill(orphan, signal.SIGKILL)


@linux_only
def test_a_killed_worker_is_exit_3_with_one_line_and_the_run_resumes(tmp_path: Path) -> None:
    root = make_images(tmp_path / "survey", 80)
    out = tmp_path / "out"
    with running_batch(root, out) as (process, workers):
        victim = max(workers)  # a pool worker (the resource tracker starts first)
        os.kill(victim, signal.SIGKILL)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 3, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "a worker process died" in errors[0], stderr
    assert "Traceback" not in stderr
    again = run_cli(root, "--out", out, "--workers", "1", "--no-progress")
    assert again.exit_code == 0, again.output
    assert sorted(r["path"] for r in read_jsonl(out)) == sorted(str(p) for p in root.iterdir())


def test_a_full_disk_is_exit_4_with_one_line_and_the_run_resumes(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_images(tmp_path / "survey", 6)
    out = tmp_path / "out"
    real_line = outputs._jsonl_line
    calls = 0

    def fill_up_after_two(record: outputs.Record) -> str:
        nonlocal calls
        calls += 1
        if calls > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_line(record)

    monkeypatch.setattr(outputs, "_jsonl_line", fill_up_after_two)
    full = run_cli(root, "--out", out, "--workers", "1", "--no-progress")
    assert full.exit_code == 4, full.output
    assert error_lines(full) == [
        f"error: no space left on the device writing {out} (2 new image(s) recorded); free some "
        "space and rerun the same command to resume"], full.stderr
    assert len(read_jsonl(out)) == 2
    assert not list(out.glob(".*.tmp"))

    monkeypatch.setattr(outputs, "_jsonl_line", real_line)
    again = run_cli(root, "--out", out, "--workers", "1", "--no-progress")
    assert again.exit_code == 0, again.output
    assert "4 image(s) processed, 2 already done" in again.stderr
    assert len(read_jsonl(out)) == 6
