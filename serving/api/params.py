"""Query parameters shared by detect, batch and annotate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Query, Request

from serving.detector import DetectOptions
from serving.errors import InvalidParameter


@dataclass(frozen=True)
class DetectQuery:
    options: DetectOptions
    lanes: int | None


def detect_query(
    request: Request,
    conf: Annotated[float | None, Query(ge=0, le=1, description="minimum confidence; default from the model card")] = None,
    iou: Annotated[float | None, Query(ge=0, le=1, description="NMS IoU threshold")] = None,
    classes: Annotated[str | None, Query(min_length=1, description="comma-separated class names, e.g. weed")] = None,
    max_det: Annotated[int, Query(ge=1, le=1000, description="at most this many boxes")] = 300,
    tile: Annotated[Literal["auto", "on", "off"], Query(description="tile big images")] = "auto",
    lanes: Annotated[int | None, Query(ge=1, le=64, description="sprayer lanes: N vertical strips")] = None,
) -> DetectQuery:
    class_ids = None
    if classes is not None:
        names = [n.strip() for n in classes.split(",") if n.strip()]
        if not names:
            raise InvalidParameter("classes: give at least one class name")
        detector = request.app.state.service.detector
        try:
            class_ids = detector.class_ids_for(names) if detector else None
        except ValueError as exc:
            raise InvalidParameter(f"classes: {exc}") from exc
    return DetectQuery(DetectOptions(conf=conf, iou=iou, classes=class_ids, max_det=max_det,
                                     tile=tile), lanes)
