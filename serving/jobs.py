"""Long jobs (fine-tuning) run one at a time, each in a child process of the trainer install.

The server never imports torch or ultralytics: a job is `python -m training.jobs ID`, which
reads its parameters from the catalogue (serving/fields/catalogue.py), reports each epoch there
and sets its final state. The runner here, one thread per server process, claims the oldest
queued job when none runs (the claim is one SQLite transaction, so with several workers exactly
one of them starts it), watches its child, kills it when the job is cancelled and marks it failed
when the child dies without saying why. A job left running by a server that stopped is marked
interrupted at the next start, and can be rerun.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from serving.fields.catalogue import Catalogue, Job
from serving.fields.names import NAME_PATTERN

log = logging.getLogger("weedscan.jobs")
POLL_SECONDS = 1.0
LOG_TAIL_BYTES = 4000
CLAIM_GRACE_SECONDS = 30.0
TRAINER_INSTALL = "pip install -e '.[train]'"


class FinetuneJobRequest(BaseModel):
    """POST /v1/jobs: fine-tune a served model on saved field datasets."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["finetune"] = "finetune"
    datasets: list[str] = Field(min_length=1, max_length=8, description="field datasets to learn from")
    base: str | None = Field(None, pattern=NAME_PATTERN,
                             description="the model to start from (default: the active one)")
    name: str = Field(pattern=NAME_PATTERN, description="the candidate model's name")
    time_hours: float = Field(0.33, gt=0, le=24, description="hours for the whole job")
    imgsz: int | None = Field(None, ge=64, le=1280)
    replay: bool = Field(True, description="replay the base's public sets where present")
    promote_if_better: bool = Field(False, description="make the candidate active if the gate says it is better")


def trainer_installed() -> bool:
    """Whether this install can run a job (the trainer extra is there)."""
    return all(importlib.util.find_spec(name) is not None for name in ("training", "ultralytics", "torch"))


def job_log(data_dir: Path, job_id: int) -> Path:
    return data_dir / "jobs" / f"{job_id}.log"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        return b"training.jobs" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the signal


def mark_orphans_interrupted(catalogue: Catalogue) -> list[int]:
    """Running jobs whose child process is gone (the server that ran them stopped). A job
    claimed moments ago by another worker may not have its pid yet: it is left alone."""
    orphans = []
    now = datetime.now(UTC)
    for job in catalogue.list_jobs(state="running"):
        pid = job.progress.get("pid")
        just_claimed = pid is None and job.started is not None and (
            now - job.started).total_seconds() < CLAIM_GRACE_SECONDS
        if not just_claimed and not (isinstance(pid, int) and _alive(pid)):
            catalogue.update_job(job.id, state="interrupted",
                                 error="the server stopped while the job ran; rerun it")
            orphans.append(job.id)
    return orphans


class JobRunner:
    """Starts queued jobs one at a time as child processes and watches them."""

    def __init__(self, catalogue: Catalogue, data_dir: Path, models_dir: Path,
                 command: Callable[[Job], list[str]] | None = None) -> None:
        """`command(job)`: the child's command line (default: `python -m training.jobs ID`)."""
        self.catalogue = catalogue
        self.data_dir = data_dir
        self.models_dir = models_dir
        self.command = command or self.training_command
        self._child: subprocess.Popen[bytes] | None = None
        self._job_id: int | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="weedscan-jobs", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """A job was queued or cancelled: look now rather than at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Server shutdown: the running child is stopped too (its job becomes interrupted)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._child is not None and self._child.poll() is None:
            self._kill()
            if self._job_id is not None:
                self.catalogue.update_job(self._job_id, state="interrupted",
                                          error="the server stopped while the job ran; rerun it")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # noqa: BLE001 - the runner must outlive one bad poll
                log.exception("job runner")
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()

    def _step(self) -> None:
        if self._child is None:
            if not self.catalogue.path.is_file():
                return  # nothing saved, no job queued: touch no disk
            job = self.catalogue.claim_next_job()
            if job is not None:
                self._spawn(job)
            return
        assert self._job_id is not None
        job = self.catalogue.get_job(self._job_id)
        if job is not None and job.state == "cancelled" and self._child.poll() is None:
            self._kill()
        code = self._child.poll()
        if code is None:
            return
        job = self.catalogue.get_job(self._job_id)
        if job is not None and job.state == "running":
            self.catalogue.update_job(job.id, state="failed",
                                      error=f"the job's process ended ({code}): {self._log_tail()}")
        self._child, self._job_id = None, None
        self._wake.set()  # the next queued job may start now

    def training_command(self, job: Job) -> list[str]:
        return [sys.executable, "-m", "training.jobs", str(job.id), "--data-dir", str(self.data_dir),
                "--models-dir", str(self.models_dir)]

    def _spawn(self, job: Job) -> None:
        log_path = job_log(self.data_dir, job.id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as output:
            self._child = subprocess.Popen(self.command(job), stdout=output, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)
        self._job_id = job.id
        self.catalogue.update_job(job.id, progress={**job.progress, "pid": self._child.pid})

    def _kill(self) -> None:
        assert self._child is not None
        try:
            os.killpg(self._child.pid, signal.SIGTERM)
            self._child.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self._child.pid, signal.SIGKILL)
            self._child.wait()

    def _log_tail(self) -> str:
        """The last line the child wrote (its error, usually)."""
        assert self._job_id is not None
        try:
            with job_log(self.data_dir, self._job_id).open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - LOG_TAIL_BYTES))
                lines = handle.read().decode("utf-8", "replace").strip().splitlines()
        except OSError:
            lines = []
        return lines[-1] if lines else "no output"
