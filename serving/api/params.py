"""Query parameters of detect, batch and annotate: the one definition of the detect options
(serving/options.py, shared with the CLI) as a FastAPI query model.

FastAPI validates it, documents each parameter in OpenAPI and, as the model forbids extra
fields, refuses a parameter it does not know (422 naming it) instead of ignoring it, for a small cost
per request over validating `request.query_params` by hand (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Literal

from fastapi import Depends, Header, Query
from pydantic import Field

from serving.answer import FRAME_TAG_MAX, FrameTag
from serving.api.deps import ServiceDep
from serving.api.service import InferenceService
from serving.detector import lookup_class_ids
from serving.errors import InvalidParameter
from serving.options import DetectParams, DetectQuery, OptionError, to_query


class ServerDetectParams(DetectParams):
    """The detect options plus what only the server has: a choice among its models."""

    model: str | None = Field(None, min_length=1, max_length=64, description=(
        "a model of GET /v1/models by name; default: the active one"))


class DetectRouteParams(ServerDetectParams):
    """detect and batch: also the plant mask on request, and a frame tag echoed in the answer."""

    vegetation_mask: bool = Field(False, description=(
        "also send the plant mask the weed cover is measured on (run-length encoded), so a "
        "client can measure the cover at any confidence threshold itself"))
    frame_id: FrameTag | None = Field(None, description=(
        f"a tag echoed in the answer (a robot's frame number): visible ASCII, no spaces, at "
        f"most {FRAME_TAG_MAX} characters"))


class AnnotateParams(ServerDetectParams):
    format: Literal["jpeg", "png"] = Field("jpeg", description="output format")


@dataclass(frozen=True)
class DetectRouteQuery(DetectQuery):
    vegetation_mask: bool = False  # the answer carries the plant mask (options.cover is "always")
    frame_id: str | None = None


@dataclass(frozen=True)
class RequestTags:
    """What a detect answer echoes so that a client matches it to its frame."""

    received_at: datetime  # UTC, when the route started on the request (before its body is read)
    request_id: str | None  # the X-Request-ID header


@dataclass(frozen=True)
class AnnotateQuery(DetectQuery):
    format: Literal["jpeg", "png"] = "jpeg"


def _query(params: ServerDetectParams, service: InferenceService) -> DetectQuery:
    """The query for the model it names (its classes checked against that model's card)."""
    if params.mode == "green" and params.model is not None:
        raise InvalidParameter("model: only with mode=model (mode=green runs no model)")
    name, card = service.resolve_model(params.model)  # 422 for an unknown or broken model
    lookup = partial(lookup_class_ids, class_names=card.classes, knower=f"model {name}")
    try:
        query = to_query(params, lookup)
    except OptionError as exc:  # an unknown class, or classes= with no name
        raise InvalidParameter(str(exc)) from exc
    return replace(query, model=None if query.green else name)


async def detect_query(params: Annotated[DetectRouteParams, Query()],
                       service: ServiceDep) -> DetectRouteQuery:
    """The validated query; 422 `invalid_parameter` naming a bad or unknown parameter otherwise."""
    query = _query(params, service)
    options = replace(query.options, cover="always") if params.vegetation_mask else query.options
    return DetectRouteQuery(options, query.lanes, query.green, query.model,
                            params.vegetation_mask, params.frame_id)


async def request_tags(request_id: Annotated[FrameTag | None, Header(
        alias="X-Request-ID", description="echoed in the answer and as a response header: "
        f"1 to {FRAME_TAG_MAX} visible ASCII characters, no spaces")] = None) -> RequestTags:
    """The receive time and the X-Request-ID (422 when malformed); a route lists it first."""
    return RequestTags(datetime.now(UTC), request_id)


async def annotate_query(params: Annotated[AnnotateParams, Query()],
                         service: ServiceDep) -> AnnotateQuery:
    query = _query(params, service)
    return AnnotateQuery(query.options, query.lanes, query.green, query.model, params.format)


DetectQueryDep = Annotated[DetectRouteQuery, Depends(detect_query)]
RequestTagsDep = Annotated[RequestTags, Depends(request_tags)]
AnnotateQueryDep = Annotated[AnnotateQuery, Depends(annotate_query)]
