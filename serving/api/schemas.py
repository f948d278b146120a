"""Response shapes of API v1, for the OpenAPI schema (answers are built by DetectionResult)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ModelRef(BaseModel):
    name: str
    version: str
    sha256: str


class ImageSize(BaseModel):
    width: int
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
    box: Box
    area: int | None = Field(None, description="mode=green only: the region's plant pixels")


class DetectAnswer(BaseModel):
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
    code: str
    message: str


class ErrorAnswer(BaseModel):
    error: ErrorBody


class BatchAnswer(BaseModel):
    results: list[DetectAnswer | ErrorAnswer]


class ModelsAnswer(BaseModel):
    models: list[dict]


class Health(BaseModel):
    status: str
