"""One image path -> one detections.jsonl record, in local and Ray workers alike: the per-file
pipeline `weedscan detect` runs too (serving/file_pipeline.py), with the model held per worker."""

from __future__ import annotations

from dataclasses import dataclass, field

from serving.answer import Record
from serving.config import Settings
from serving.detector import Detector
from serving.file_pipeline import FileSettings, ImageDetector, detect_file
from serving.green import GreenDetector
from serving.vegetation import VegetationOptions


@dataclass(frozen=True)
class BatchJob:
    """What every worker needs to know; small and picklable."""

    model: str
    # No timings by default: records of a resumed or Ray run equal a local one's.
    files: FileSettings = field(default_factory=lambda: FileSettings(timing=False))
    threads: int | None = None  # inference threads per worker; None: a fair share of the cores
    green: VegetationOptions | None = None  # mode green: no model, vegetation regions are plants


class ImageWorker:
    """Holds one model session and turns image paths into records."""

    def __init__(self, job: BatchJob) -> None:
        self.job = job
        self.detector: ImageDetector
        if job.green is not None:
            self.detector = GreenDetector(job.green)
        else:
            settings = Settings()  # WEEDSCAN_ENGINE / WEEDSCAN_PRECISION, as the server reads them
            # The driver verified the model's sha256 once; workers skip re-hashing it.
            self.detector = Detector(job.model, threads=job.threads, verify=False,
                                     engine=settings.engine, precision=settings.precision)

    def process(self, path: str) -> Record:
        return detect_file(path, self.detector, self.job.files)

    def process_many(self, paths: list[str]) -> list[Record]:
        return [self.process(p) for p in paths]
