"""Query parameters of detect, batch and annotate: one pydantic model, a FastAPI query model.

FastAPI validates it, documents each parameter in OpenAPI and, with `extra="forbid"`, refuses
a parameter it does not know (422 naming it) instead of ignoring it. Measured in process, this
costs ~0.1 ms per request more than validating `request.query_params` by hand (0.63 against
0.50 ms for a whole rejected request): 0.5% of a robot's 20 ms frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from serving.api.deps import ServiceDep
from serving.api.service import InferenceService
from serving.detector import DetectOptions
from serving.errors import InvalidParameter
from serving.vegetation import VegetationOptions


class DetectParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conf: float | None = Field(None, ge=0, le=1, description="minimum confidence; default from the model card")
    iou: float | None = Field(None, ge=0, le=1, description="NMS IoU threshold")
    classes: list[str] | None = Field(None, description="class names, e.g. weed; comma-separated "
                                      "(classes=crop,weed) or repeated (classes=crop&classes=weed)")
    max_det: int = Field(300, ge=1, le=1000, description="at most this many boxes")
    tile: Literal["auto", "on", "off"] = Field("auto", description="tile big images")
    lanes: int | None = Field(None, ge=1, le=64, description="sprayer lanes: N vertical strips")
    mode: Literal["model", "green"] = Field("model", description="green: no model, every vegetation "
                                            "region is a `plant` (green-on-brown)")
    veg_index: Literal["exg", "exgr", "hsv"] = Field("exg", description="mode=green: vegetation index")
    veg_threshold: Literal["auto"] | float = Field("auto", description="mode=green: index threshold, "
                                                   "or auto (Otsu)")
    min_area: int = Field(50, ge=1, description="mode=green: smallest plant region, pixels")


class AnnotateParams(DetectParams):
    format: Literal["jpeg", "png"] = Field("jpeg", description="output format")


@dataclass(frozen=True)
class DetectQuery:
    options: DetectOptions
    lanes: int | None
    green: VegetationOptions | None = None  # mode=green: no model runs


@dataclass(frozen=True)
class AnnotateQuery(DetectQuery):
    format: Literal["jpeg", "png"] = "jpeg"


def _class_ids(classes: list[str] | None, service: InferenceService) -> tuple[int, ...] | None:
    if classes is None:
        return None
    names = [n.strip() for value in classes for n in value.split(",") if n.strip()]
    if not names:
        raise InvalidParameter("classes: give at least one class name")
    try:
        return service.detector.class_ids_for(names) if service.detector else None
    except ValueError as exc:
        raise InvalidParameter(f"classes: {exc}") from exc


async def detect_query(params: Annotated[DetectParams, Query()], service: ServiceDep) -> DetectQuery:
    """The validated query; 422 `invalid_parameter` naming a bad or unknown parameter otherwise."""
    green = (VegetationOptions(params.veg_index, params.veg_threshold, params.min_area)
             if params.mode == "green" else None)
    options = DetectOptions(conf=params.conf, iou=params.iou, classes=_class_ids(params.classes, service),
                            max_det=params.max_det, tile=params.tile)
    return DetectQuery(options, params.lanes, green)


async def annotate_query(params: Annotated[AnnotateParams, Query()],
                         service: ServiceDep) -> AnnotateQuery:
    query = await detect_query(params, service)
    return AnnotateQuery(query.options, query.lanes, query.green, params.format)


DetectQueryDep = Annotated[DetectQuery, Depends(detect_query)]
AnnotateQueryDep = Annotated[AnnotateQuery, Depends(annotate_query)]
