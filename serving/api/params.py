"""Query parameters of detect, batch and annotate: the one definition of the detect options
(serving/options.py, shared with the CLI) as a FastAPI query model.

FastAPI validates it, documents each parameter in OpenAPI and, as the model forbids extra
fields, refuses a parameter it does not know (422 naming it) instead of ignoring it, for a small cost
per request over validating `request.query_params` by hand (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Annotated, Literal

from fastapi import Depends, Query
from pydantic import Field

from serving.api.deps import ServiceDep
from serving.api.service import InferenceService
from serving.detector import lookup_class_ids
from serving.errors import InvalidParameter
from serving.options import DetectParams, DetectQuery, OptionError, to_query


class ServerDetectParams(DetectParams):
    """The detect options plus what only the server has: a choice among its models."""

    model: str | None = Field(None, min_length=1, max_length=64, description=(
        "a model of GET /v1/models by name; default: the active one"))


class AnnotateParams(ServerDetectParams):
    format: Literal["jpeg", "png"] = Field("jpeg", description="output format")


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


async def detect_query(params: Annotated[ServerDetectParams, Query()],
                       service: ServiceDep) -> DetectQuery:
    """The validated query; 422 `invalid_parameter` naming a bad or unknown parameter otherwise."""
    return _query(params, service)


async def annotate_query(params: Annotated[AnnotateParams, Query()],
                         service: ServiceDep) -> AnnotateQuery:
    query = _query(params, service)
    return AnnotateQuery(query.options, query.lanes, query.green, query.model, params.format)


DetectQueryDep = Annotated[DetectQuery, Depends(detect_query)]
AnnotateQueryDep = Annotated[AnnotateQuery, Depends(annotate_query)]
