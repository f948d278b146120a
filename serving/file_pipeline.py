"""One image file -> one typed record: the per-file pipeline of `weedscan detect` (a line on
stdout) and `weedscan batch` (a line of detections.jsonl, in local and Ray workers alike).

Read (regular files only, at most the upload limit), decode, detect, add the EXIF GPS fix, and
build the typed record; whatever goes wrong with one file is that file's error record, never the
end of the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from serving.answer import BatchErrorRecord, BatchRecord, DetectLine, GpsFix, Record
from serving.config import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES
from serving.detector import DetectOptions
from serving.errors import ClientError
from serving.exif_gps import read_gps
from serving.imaging import decode_image, read_image_file
from serving.result import DetectionResult


class ImageDetector(Protocol):
    """The model's Detector, or the green-on-brown GreenDetector."""

    def detect(self, image: np.ndarray, options: DetectOptions) -> DetectionResult: ...


# Writes the annotated copy of (path, image, result, file bytes); returns where it went.
SaveAnnotated = Callable[[str, np.ndarray, DetectionResult, bytes], Path]


@dataclass(frozen=True)
class FileSettings:
    """How every file of a run is read and answered; small and picklable (it goes to workers)."""

    options: DetectOptions = field(default_factory=DetectOptions)  # conf, iou, classes, max_det, tile
    lanes: int | None = None  # sprayer lanes in each record
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES  # a bigger file is an error record (the upload limit)
    timing: bool = True  # keep timing_ms (decode, inference, total); it differs from run to run
    vegetation_mask: bool = False  # each record carries the plant mask (options.cover "always")


def detect_file(path: str | Path, detector: ImageDetector, settings: FileSettings,
                save: SaveAnnotated | None = None) -> Record:
    """The file's record: its answer (a DetectLine naming the annotated copy when `save` is
    given), or its error (a BatchErrorRecord)."""
    name = str(path)
    start = time.perf_counter()
    try:  # the whole file, its record's check included: one bad file is one error record
        data = read_image_file(name, settings.max_bytes)
        image = decode_image(data, settings.max_pixels)
        decoded = time.perf_counter()
        result = detector.detect(image, settings.options)
        fields: dict[str, Any] = result.answer_fields(settings.lanes, settings.vegetation_mask)
        if settings.timing:
            fields["timing_ms"] = {**fields["timing_ms"],
                                   "decode": round((decoded - start) * 1000, 2),
                                   "total": round((time.perf_counter() - start) * 1000, 2)}
        else:
            del fields["timing_ms"]
        fix: GpsFix | None = read_gps(data)
        if fix is not None:
            fields["gps"] = fix
        if save is None:
            return BatchRecord(path=name, **fields)
        return DetectLine(path=name, annotated=str(save(name, image, result, data)), **fields)
    except OSError as exc:
        return BatchErrorRecord.of(getattr(exc, "code", "unreadable_file"),
                                   exc.strerror or str(exc), path=name)
    except ClientError as exc:
        return BatchErrorRecord.of(exc.code, exc.message, path=name)
    except Exception as exc:  # noqa: BLE001 - one odd file must not end a whole survey
        return BatchErrorRecord.of("detect_failed", f"{type(exc).__name__}: {exc}", path=name)
