"""One image path -> one detections.jsonl record; the same code runs in local and Ray workers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from serving.answer import BatchErrorRecord, BatchRecord, wire_dict
from serving.config import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES
from serving.detector import DetectOptions, Detector
from serving.errors import ClientError
from serving.exif_gps import read_gps
from serving.green import green_detect
from serving.imaging import decode_image, read_image_file
from serving.vegetation import VegetationOptions

Record = dict[str, Any]


@dataclass(frozen=True)
class BatchJob:
    """What every worker needs to know; small and picklable."""

    model: str
    threads: int | None = None  # ONNX Runtime threads per worker; None: a fair share of the cores
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES  # a bigger file is an error record (the upload limit)
    options: DetectOptions = DetectOptions()  # conf, iou, classes, max_det, tile
    lanes: int | None = None  # sprayer lanes in each record
    timing: bool = False  # keep timing_ms in the records (it differs from run to run)
    green: VegetationOptions | None = None  # mode green: no model, vegetation regions are plants


def error_record(path: str, code: str, message: str) -> Record:
    return wire_dict(BatchErrorRecord.model_validate(
        {"path": path, "error": {"code": code, "message": message}}))


class ImageWorker:
    """Holds one ONNX Runtime session and turns image paths into records."""

    def __init__(self, job: BatchJob) -> None:
        self.job = job
        # The driver verified the model's sha256 once; workers skip re-hashing it.
        self.detector = (Detector(job.model, threads=job.threads, verify=False)
                         if job.green is None else None)

    def process(self, path: str) -> Record:
        start = time.perf_counter()
        try:  # the whole image, its record's check included: one bad image is one error line
            data = read_image_file(path, self.job.max_bytes)
            image = decode_image(data, self.job.max_pixels)
            decoded = time.perf_counter()
            result = (self.detector.detect(image, self.job.options) if self.detector is not None
                      else green_detect(image, self.job.green, self.job.options.max_det))
            record: Record = {"path": path, **result.to_dict(lanes=self.job.lanes)}
            if self.job.timing:
                record["timing_ms"].update(decode=round((decoded - start) * 1000, 2),
                                           total=round((time.perf_counter() - start) * 1000, 2))
            else:
                del record["timing_ms"]
            fix = read_gps(data)
            if fix is not None:
                record["gps"] = {"lat": fix.lat, "lon": fix.lon}
            return wire_dict(BatchRecord.model_validate(record))  # a line is the typed record, checked
        except OSError as exc:
            return error_record(path, "unreadable_file", exc.strerror or str(exc))
        except ClientError as exc:
            return error_record(path, exc.code, exc.message)
        except Exception as exc:  # noqa: BLE001 - one odd file must not end a whole survey
            return error_record(path, "detect_failed", f"{type(exc).__name__}: {exc}")

    def process_many(self, paths: list[str]) -> list[Record]:
        return [self.process(p) for p in paths]
