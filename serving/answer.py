"""The wire answers of API v1 (pydantic): one definition for the API, `weedscan detect` and batch.

`DetectionResult.answer()` builds a `DetectAnswer` (or any answer that extends it: a batch item,
a batch record, a detect line) directly from its typed parts; `wire_json` / `wire_dict` write
any answer as it goes on the wire. Optional fields (`lanes`, a detection's `area`, a record's
`gps`) appear only when set. Every error body, whoever writes it, is an `ErrorAnswer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class ModelRef(BaseModel):
    name: str
    version: str
    sha256: str
    engine: str | None = Field(None, description="the inference engine that ran it (onnxruntime, "
                                                 "openvino); absent in green mode, where no model runs")
    precision: str | None = Field(None, description="the precision it ran in (fp32, bf16, int8)")


class ImageSize(BaseModel):
    width: int = Field(description="pixels of the upright image (EXIF orientation applied)")
    height: int


class Box(BaseModel):
    x1: float
    y1: float
    x2: float
    y2: float


class Detection(BaseModel):
    class_id: int
    class_name: str
    confidence: float = Field(ge=0, le=1)
    box: Box = Field(description="pixels of the upright image, x1,y1 top-left")
    area: int | None = Field(None, description="mode=green only: the region's plant pixels")


class DetectAnswer(BaseModel):
    """What one image gets: its boxes, per-class counts, weed cover and, when asked, lanes."""

    model: ModelRef
    image: ImageSize
    detections: list[Detection]
    counts: dict[str, int] = Field(description="every class of the model, zeros included")
    weed_cover: float = Field(ge=0, le=1, description="fraction of the image's pixels that are "
                              "vegetation inside weed boxes and not in crop boxes (plant area)")
    weed_box_cover: float = Field(ge=0, le=1, description="fraction of the image under weed boxes")
    lanes: list[bool] | None = Field(None, description="only when asked: weed in vertical strip i")
    timing_ms: dict[str, float]


class ErrorBody(BaseModel):
    code: str = Field(description="stable, machine-readable, e.g. payload_too_large")
    message: str = Field(description="what went wrong and what to do, for a person")


class ErrorAnswer(BaseModel):
    """The one error shape: {"error": {"code", "message"}} (HTTP bodies, CLI lines, records)."""

    error: ErrorBody

    @classmethod
    def of(cls, code: str, message: str, **refs: Any) -> Self:
        """This error (and, for an item or a record, which file it is about)."""
        return cls(error=ErrorBody(code=code, message=message), **refs)


class ItemRef(BaseModel):
    """Which file of a batch an item answers."""

    index: int = Field(ge=0, description="position of the file in the request, from 0")
    filename: str | None = Field(description="the file's name as uploaded (null when it had none)")


# ItemRef last in the bases: its fields come first on the wire.
class BatchItem(DetectAnswer, ItemRef):
    pass


class BatchError(ErrorAnswer, ItemRef):
    pass


class GpsFix(BaseModel):
    """Where a photo was taken (serving/exif_gps.py reads it from the EXIF GPS block)."""

    model_config = ConfigDict(frozen=True)

    lat: float = Field(ge=-90, le=90, description="degrees north, WGS 84")
    lon: float = Field(ge=-180, le=180, description="degrees east, WGS 84")


class PathRef(BaseModel):
    """Which file of a `weedscan batch` run a record answers."""

    path: str


class BatchRecord(DetectAnswer, PathRef):
    """A detections.jsonl line: the wire answer plus the file's path and, when the photo has one,
    its EXIF GPS fix. Timings only with --timing (they differ from run to run, and records of a
    resumed or Ray run must equal a local one's)."""

    timing_ms: dict[str, float] | None = None
    gps: GpsFix | None = None


class BatchErrorRecord(ErrorAnswer, PathRef):
    pass


# A detections.jsonl line: an answer or an error, each naming its file.
Record = BatchRecord | BatchErrorRecord
RECORD = TypeAdapter(Record)


class DetectLine(BatchRecord):
    """A `weedscan detect` line: the batch record (with timings) plus, with --save-dir, where
    the annotated copy went. A failed image's line is a BatchErrorRecord."""

    annotated: str | None = None


class BatchAnswer(BaseModel):
    results: list[BatchItem | BatchError] = Field(description="one item per file, in input order")


def wire_dict(answer: BaseModel) -> dict[str, Any]:
    """The answer's JSON as Python values (what `weedscan detect` and batch JSONL print)."""
    return answer.model_dump(mode="json", exclude_unset=True)


def wire_json(answer: BaseModel) -> bytes:
    """The answer's JSON body (compact; the same values as `wire_dict`)."""
    return answer.model_dump_json(exclude_unset=True).encode()


# The one CSV schema of a summary table: batch's summary.csv and the web page's table download
# (serving/static/app.js writes the same header; tests/web checks it). A row per image: the
# answer's counts (a column per class, named as in `counts`), its two cover fractions (0-1, as
# on the wire), the confidence floor ("" in mode=green) and the mode, the GPS fix, the error.
SUMMARY_FIRST = ("file",)
SUMMARY_LAST = ("weed_cover", "weed_box_cover", "conf", "mode", "latitude", "longitude", "error")


def summary_header(classes: Sequence[str]) -> list[str]:
    return [*SUMMARY_FIRST, *classes, *SUMMARY_LAST]
