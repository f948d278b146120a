"""Run a batch on this machine: worker processes, each with its own ONNX Runtime session."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from serving.batch.work import BatchJob, ImageWorker, Record

_worker: ImageWorker | None = None  # one per worker process


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _init_worker(job: BatchJob) -> None:
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _worker = ImageWorker(job)


def _process(path: str) -> Record:
    assert _worker is not None, "worker not initialised"
    return _worker.process(path)


def run_local(paths: Sequence[str], job: BatchJob, workers: int) -> Iterator[Record]:
    """Records in completion order. One worker runs in this process (no start-up cost)."""
    if not paths:
        return
    if workers <= 1:
        worker = ImageWorker(job)
        yield from (worker.process(p) for p in paths)
        return
    context = multiprocessing.get_context("spawn")  # no fork of ONNX Runtime threads
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                               initializer=_init_worker, initargs=(job,))
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
