"""The wire answers of API v1 (pydantic): one definition for the API, `weedscan detect` and batch.

`DetectionResult.answer()` builds a `DetectAnswer` (or any answer that extends it: a batch item,
a batch record, a detect line) directly from its typed parts; `wire_json` / `wire_dict` write
any answer as it goes on the wire. Optional fields (`lanes`, a detection's `area`, `gps`,
the plant mask) appear only when set. Every error body, whoever writes it, is an `ErrorAnswer`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Self

import numpy as np
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)

from serving.mask_rle import decode_runs, encode_runs

# A frame tag (`?frame_id=`, the X-Request-ID header) that a robot sends to match an answer to a
# camera frame: visible ASCII (no space, no control character), 1 to FRAME_TAG_MAX characters.
FRAME_TAG_MAX = 128
FRAME_TAG_PATTERN = rf"^[!-~]{{1,{FRAME_TAG_MAX}}}$"


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


def wire_time(moment: datetime) -> str:
    """UTC, ISO 8601, to the millisecond: 2026-12-06T17:12:16.123Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


WireTime = Annotated[AwareDatetime, PlainSerializer(wire_time, return_type=str, when_used="json"),
                     WithJsonSchema({"type": "string", "format": "date-time",
                                     "example": "2026-12-06T17:12:16.123Z"}, mode="serialization")]
def check_frame_tag(value: str) -> str:
    if not re.fullmatch(FRAME_TAG_PATTERN, value):
        raise ValueError(f"1 to {FRAME_TAG_MAX} visible ASCII characters, no spaces (got "
                         f"{len(value)} characters)")
    return value


FrameTag = Annotated[str, AfterValidator(check_frame_tag),
                     WithJsonSchema({"type": "string", "pattern": FRAME_TAG_PATTERN,
                                     "minLength": 1, "maxLength": FRAME_TAG_MAX})]


class VegetationMaskRuns(BaseModel):
    """A plant mask (1: plant, 0: soil) as run lengths, row-major, the first run of 0s; see
    serving/mask_rle.py and docs/api.md for how a client measures weed cover from it."""

    width: int = Field(ge=1, description="the mask's pixels (may be fewer than the image's: "
                                          "a coarse mask covering the whole image)")
    height: int = Field(ge=1)
    counts: list[int] = Field(description="run lengths, row-major, alternating 0 and 1 pixels, "
                                          "the first a run of 0s; they add up to width x height")

    @model_validator(mode="after")
    def _runs_fill_the_mask(self) -> Self:
        if any(n < 0 for n in self.counts) or sum(self.counts) != self.width * self.height:
            raise ValueError(f"counts must be >= 0 and add up to {self.width}x{self.height} pixels")
        return self

    @classmethod
    def of(cls, mask: np.ndarray) -> Self:
        height, width = mask.shape[:2]
        return cls(width=width, height=height, counts=encode_runs(mask))

    def pixels(self) -> np.ndarray:
        """The (height, width) bool mask."""
        return decode_runs(self.counts, self.width, self.height)


class GpsFix(BaseModel):
    """Where a photo was taken (serving/exif_gps.py reads it from the EXIF GPS block)."""

    model_config = ConfigDict(frozen=True)

    lat: float = Field(ge=-90, le=90, description="degrees north, WGS 84")
    lon: float = Field(ge=-180, le=180, description="degrees east, WGS 84")


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
    received_at: WireTime | None = Field(None, description=(
        "HTTP only: when the server received the request (UTC, ISO 8601, milliseconds)"))
    frame_id: FrameTag | None = Field(None, description="the request's ?frame_id=, when given")
    request_id: FrameTag | None = Field(None, description="the request's X-Request-ID header, "
                                        "when given (it is also echoed as a response header)")
    vegetation_mask: VegetationMaskRuns | None = Field(None, description=(
        "only when asked (vegetation_mask=true): the plant mask the weed cover is measured on"))
    gps: GpsFix | None = Field(None, description="where the photo was taken, from its EXIF GPS "
                               "block; only when it has one")


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


class PathRef(BaseModel):
    """Which file of a `weedscan batch` run a record answers."""

    path: str


class BatchRecord(DetectAnswer, PathRef):
    """A detections.jsonl line: the wire answer plus the file's path and, when the photo has one,
    its EXIF GPS fix. Timings only with --timing (they differ from run to run, and records of a
    resumed or Ray run must equal a local one's)."""

    timing_ms: dict[str, float] | None = None  # type: ignore[assignment]  # optional here


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
    received_at: WireTime | None = Field(None, description="when the server received the request")
    frame_id: FrameTag | None = Field(None, description="the request's ?frame_id=, when given")
    request_id: FrameTag | None = Field(None, description="the request's X-Request-ID, when given")


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
