"""Run a batch on this machine: worker processes, each with its own ONNX Runtime session."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Generator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from serving.batch.work import BatchJob, ImageWorker, Record
from serving.config import cpu_count  # noqa: F401 - benchmarks import it from here

_worker: ImageWorker | None = None  # one per worker process


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_PARENT_POLL_S = 1.0


def die_with_parent(parent_pid: int) -> None:
    """End this process when `parent_pid` (the driver) dies, even by SIGKILL: otherwise each
    worker stays behind, idle with its model in memory, reparented to init.

    Linux: the kernel sends SIGKILL on the parent's death (PR_SET_PDEATHSIG). Everywhere: a
    thread exits once the parent PID changes (reparenting), which also covers a parent that died
    before the prctl call.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the thread below still holds
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="weedscan-parent-watch", daemon=True).start()


def _init_worker(job: BatchJob, parent_pid: int) -> None:
    global _worker
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _worker = ImageWorker(job)


def _process(path: str) -> Record:
    assert _worker is not None, "worker not initialised"
    return _worker.process(path)


def run_local(paths: Sequence[str], job: BatchJob, workers: int) -> Generator[Record, None, None]:
    """Records in completion order. One worker runs in this process (no start-up cost)."""
    if not paths:
        return
    if workers <= 1:
        worker = ImageWorker(job)
        yield from (worker.process(p) for p in paths)
        return
    context = multiprocessing.get_context("spawn")  # no fork of ONNX Runtime threads
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                               initializer=_init_worker, initargs=(job, os.getpid()))
    pending: set[Future[Record]] = set()
    todo = iter(paths)
    try:
        while True:
            # A bounded window of work in flight: memory stays flat on a survey of any size.
            for path in todo:
                pending.add(pool.submit(_process, path))
                if len(pending) >= workers * 4:
                    break
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
