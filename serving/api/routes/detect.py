"""POST /v1/detect, /v1/detect/batch and /v1/annotate."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from serving import annotate
from serving.answer import (
    BatchAnswer,
    BatchError,
    BatchItem,
    DetectAnswer,
    ErrorAnswer,
    wire_json,
)
from serving.api.auth import require_api_key
from serving.api.deps import ServiceDep
from serving.api.metrics import note_model
from serving.api.params import (
    AnnotateQueryDep,
    DetectQueryDep,
    DetectRouteQuery,
    RequestTags,
    RequestTagsDep,
)
from serving.api.service import InferenceService
from serving.config import size_text
from serving.detector import Detector
from serving.errors import ClientError, PayloadTooLarge
from serving.exif_gps import read_gps
from serving.imaging import SUPPORTED_MEDIA_TYPES
from serving.options import DetectQuery

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorAnswer, "description": text} for status, text in {
        400: "undecodable image or malformed body", 401: "missing or wrong API key",
        413: "body or pixel count over the limit", 415: "not a supported image type",
        422: "bad or unknown parameter, or missing field",
        503: "overloaded (see Retry-After) or not ready",
    }.items()}

# The body is read by the route itself (bounded, in memory, see bodies.py), so FastAPI cannot
# infer it: its OpenAPI description is given here.
_IMAGE_SCHEMA = {"type": "string", "format": "binary"}
_IMAGE_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                                       "properties": {"image": _IMAGE_SCHEMA}}},
    # image/jpg (not a registered type) is accepted like application/octet-stream, not listed
    **{media: {"schema": _IMAGE_SCHEMA} for media in (*SUPPORTED_MEDIA_TYPES, "application/octet-stream")},
}}}
_BATCH_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["images"], "properties": {
        "images": {"type": "array", "minItems": 1, "items": _IMAGE_SCHEMA}}}}}}}


def _json(answer: BaseModel) -> Response:
    """The answer, already validated, written once (JSONResponse would run json.dumps on a dict)."""
    return Response(wire_json(answer), media_type="application/json")


async def _model(request: Request, service: InferenceService, query: DetectQuery) -> Detector | None:
    """The detector of the model the query names (loaded on demand), noted for /metrics;
    None in green mode."""
    if query.model is None:
        return None
    note_model(request.scope, query.model)
    return await service.detector_for(query.model)


def _tags(tags: RequestTags, query: DetectRouteQuery) -> dict[str, Any]:
    """What the answer echoes for the client to match it to its frame: the receive time, and
    the frame id and request id when the request gave them."""
    given = {"frame_id": query.frame_id, "request_id": tags.request_id}
    return {"received_at": tags.received_at, **{k: v for k, v in given.items() if v is not None}}


# The body is read before a request takes an inference slot, so a stalled or trickling upload
# (408 when too slow) holds only its own connection; `service.upload` first refuses a full or
# unready server without reading the body, and bounds the memory of the bodies held.


@router.post("/detect", response_model=DetectAnswer, responses=_ERRORS, openapi_extra=_IMAGE_BODY,
             summary="Detect crops and weeds in one image")
async def detect(tags: RequestTagsDep, request: Request, service: ServiceDep,
                 query: DetectQueryDep) -> Response:
    """The image as multipart field `image`, or as the raw body with an image Content-Type
    (`image/jpg` and `application/octet-stream` too, when the bytes are a supported image)."""
    async with service.upload(request) as upload:
        model = await _model(request, service, query)
        data = await upload.image()
        with upload.slot():
            result, _ = await service.detect_bytes(data, query.options, query.green, model,
                                                   gone=request.is_disconnected)
    refs = _tags(tags, query)
    fix = read_gps(data)   # where the photo was taken, when its EXIF says (the page maps it)
    if fix:
        refs["gps"] = fix
    return _json(result.answer(query.lanes, vegetation_mask=query.vegetation_mask, **refs))


@router.post("/detect/batch", response_model=BatchAnswer, responses=_ERRORS,
             openapi_extra=_BATCH_BODY, summary="Detect in several images, answers in input order")
async def detect_batch(tags: RequestTagsDep, request: Request, service: ServiceDep,
                       query: DetectQueryDep) -> Response:
    """Each item names its file (`index`, `filename`); a broken file gives an error item."""
    results: list[BatchItem | BatchError] = []
    async with service.upload(request) as upload:
        model = await _model(request, service, query)
        parts = await upload.images()
        with upload.slot():
            for index, part in enumerate(parts):
                if index and await request.is_disconnected():  # nobody waits for the rest
                    raise ClientDisconnect()
                try:
                    if len(part.data) > service.settings.max_upload_bytes:
                        raise PayloadTooLarge(f"{part.filename or 'this file'} is over the per-image "
                                              f"limit of {size_text(service.settings.max_upload_bytes)}")
                    result, _ = await service.detect_bytes(bytes(part.data), query.options,
                                                           query.green, model, gone=request.is_disconnected)
                    results.append(result.answer(query.lanes, BatchItem, query.vegetation_mask,
                                                 index=index, filename=part.filename))
                except ClientError as exc:
                    results.append(BatchError.of(exc.code, exc.message, index=index,
                                                 filename=part.filename))
    return _json(BatchAnswer.model_construct(results=results, **_tags(tags, query)))


@router.post("/annotate", responses={200: {"content": {"image/jpeg": {}, "image/png": {}},
                                           "description": "the image with the boxes of its "
                                                          "DetectAnswer drawn"}, **_ERRORS},
             response_class=Response, openapi_extra=_IMAGE_BODY,
             summary="The image with the detected boxes drawn on it")
async def annotate_image(request: Request, service: ServiceDep, query: AnnotateQueryDep) -> Response:
    async with service.upload(request) as upload:
        model = await _model(request, service, query)
        data = await upload.image()
        with upload.slot():
            result, image = await service.detect_bytes(data, query.options, query.green, model,
                                                       gone=request.is_disconnected)
            fmt = annotate.output_format(image, query.format)  # PNG when JPEG cannot hold it
            drawn = await asyncio.to_thread(lambda: annotate.encode(annotate.draw(image, result), fmt))
    return Response(drawn, media_type=f"image/{fmt}")
