"""A whole survey: find the images, skip those already done, run the rest, write the outputs."""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from serving.answer import BatchErrorRecord, ModelRef, Record
from serving.batch import outputs
from serving.batch.inputs import find_images
from serving.batch.local_runner import run_local
from serving.batch.work import BatchJob
from serving.config import cpu_count
from serving.green import green_model_info
from serving.model_card import ModelCard, load_card


class BatchError(ValueError):
    """The batch cannot run as asked (reported as one `error:` line)."""


class BatchCrash(RuntimeError):
    """The run stopped part-way. What it recorded stays in detections.jsonl: a rerun resumes."""

    exit_code = 1


class WorkerDied(BatchCrash):
    exit_code = 3


class DiskFull(BatchCrash):
    exit_code = 4


_DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


@dataclass(frozen=True)
class BatchReport:
    found: int  # images the inputs name
    skipped: int  # of those, already in detections.jsonl
    processed: int  # run now
    new_errors: int  # of those run now, the ones that failed
    earlier_errors: int  # error records of earlier runs kept as they were (not retried)
    records: int  # lines in the final detections.jsonl
    out_dir: Path

    def summary(self) -> str:
        """What this run did and what is new, for a person."""
        text = (f"{self.processed} image(s) processed, {self.skipped} already done -> "
                f"{self.out_dir} ({self.records} record(s)); new errors: {self.new_errors}")
        if self.earlier_errors:
            text += (f"; {self.earlier_errors} error(s) of earlier runs kept "
                     "(--retry-errors reruns them)")
        return text


def run_batch(inputs: Iterable[str | Path], out_dir: Path, job: BatchJob, *,
              workers: int | None = None, ray_address: str | None = None,
              limit: int | None = None, retry_errors: bool = False,
              progress: bool = True) -> BatchReport:
    """Detect on every image the inputs name; resumes whatever `out_dir` already holds.

    `limit` stops after that many new images (a first look; the next run goes on from there).
    """
    paths = find_images(inputs)
    card: ModelCard | None = None
    if job.green is None:
        card = load_card(Path(job.model))  # a missing model or a bad card fails here
        model_sha256 = card.sha256
    else:
        model_sha256 = ModelRef.model_validate(green_model_info(job.green)).sha256
    options = run_options(job, card)
    with _crash_reports(out_dir, lambda: 0):
        out_dir.mkdir(parents=True, exist_ok=True)
        records = outputs.load_records(out_dir / outputs.JSONL)
    _check_same_model(records, model_sha256, out_dir)
    with _crash_reports(out_dir, lambda: 0):
        _check_same_options(out_dir, options, card)
    failed = {r.path for r in records if isinstance(r, BatchErrorRecord)}
    done = {r.path for r in records} - (failed if retry_errors else set())
    todo = [p for p in paths if p not in done]
    if limit is not None:
        todo = todo[:limit]

    results = _results(todo, job, workers, ray_address)
    written = new_errors = 0
    with _crash_reports(out_dir, lambda: written), outputs.appender(out_dir / outputs.JSONL) as write, tqdm(
            total=len(todo), unit="img", desc="weedscan batch", disable=not progress,
            dynamic_ncols=True, mininterval=0.5) as bar:
        try:
            for record in results:
                write(record)
                written += 1
                new_errors += isinstance(record, BatchErrorRecord)
                bar.update()
        finally:
            results.close()  # stop the workers before reporting
        final = outputs.finalize(out_dir, options.conf)
    return BatchReport(found=len(paths), skipped=sum(p in done for p in paths),
                       processed=len(todo), new_errors=new_errors,
                       earlier_errors=sum(isinstance(r, BatchErrorRecord) for r in final) - new_errors,
                       records=len(final), out_dir=out_dir)


@contextmanager
def _crash_reports(out_dir: Path, written: Callable[[], int]) -> Iterator[None]:
    """A dead worker or a full disk as one BatchCrash saying so (not a traceback)."""
    try:
        yield
    except BrokenProcessPool as exc:
        raise WorkerDied(f"a worker process died (killed, or out of memory?) after {written()} new "
                         f"image(s) were recorded in {out_dir}; rerun the same command to resume") from exc
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            raise
        raise DiskFull(f"no space left on the device writing {out_dir} ({written()} new image(s) "
                       "recorded); free some space and rerun the same command to resume") from exc


def _results(todo: list[str], job: BatchJob, workers: int | None,
             ray_address: str | None) -> Generator[Record, None, None]:
    if ray_address:
        from serving.batch.ray_runner import (  # optional and heavy: on demand
            import_ray,
            run_ray,
        )

        import_ray()  # fail before any output is touched when Ray is missing
        return run_ray(todo, job, ray_address, workers)
    count = max(1, min(workers or cpu_count(), len(todo) or 1))
    threads = job.threads or max(1, cpu_count() // count)  # a fair share of the cores each
    return run_local(todo, dataclasses.replace(job, threads=threads), count)


def run_options(job: BatchJob, card: ModelCard | None) -> outputs.RunOptions:
    """The options the records are made with; conf and iou as used (the card's defaults when not
    given), so that asking for the default by its value is the same run."""
    detect = job.files.options
    conf, iou = detect.conf, detect.iou
    if card is not None:
        conf = card.thresholds.conf if conf is None else conf
        iou = card.thresholds.iou if iou is None else iou
    return outputs.RunOptions(**{**dataclasses.asdict(detect), "conf": conf, "iou": iou,
                                 "lanes": job.files.lanes})


def _check_same_options(out_dir: Path, options: outputs.RunOptions, card: ModelCard | None) -> None:
    """Records made with other options (conf, classes, lanes ...) are not mixed in either."""
    before = outputs.recorded_options(out_dir)
    if before is None:
        outputs.record_options(out_dir, options)
        return
    if card is not None:  # an older options.json wrote null for the card's default
        before.conf = card.thresholds.conf if before.conf is None else before.conf
        before.iou = card.thresholds.iou if before.iou is None else before.iou
    old, new = before.model_dump(mode="json"), options.model_dump(mode="json")
    if old != new:
        changed = ", ".join(f"{k} {old.get(k)} -> {v}" for k, v in new.items() if old.get(k) != v)
        raise BatchError(f"{out_dir} holds results made with other options ({changed}); "
                         "use a new --out folder for these options")


def _check_same_model(records: list[Record], sha256: str, out_dir: Path) -> None:
    for record in records:
        if isinstance(record, BatchErrorRecord):
            continue
        if record.model.sha256 != sha256:
            raise BatchError(
                f"{out_dir} holds results of another model ({record.model.name}, sha256 "
                f"{record.model.sha256[:12]}…); use a new --out folder for this model")
        return
