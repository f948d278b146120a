"""Health, readiness, metrics and the model cards: open even when API keys are set."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from serving.api.auth import require_api_key
from serving.api.errors import error_response
from serving.api.schemas import ErrorAnswer, Health, ModelsAnswer

router = APIRouter()


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=Health, responses={503: {"model": ErrorAnswer}},
            summary="The model is loaded and warmed up")
async def readyz(request: Request) -> JSONResponse:
    service = request.app.state.service
    if service.ready:
        return JSONResponse({"status": "ready"})
    message = f"model failed to load: {service.load_error}" if service.load_error else "model loading"
    return error_response(503, "not_ready", message,
                          {"Retry-After": str(request.app.state.settings.retry_after_s)})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/models", response_model=ModelsAnswer, dependencies=[Depends(require_api_key)],
            responses={401: {"model": ErrorAnswer}, 503: {"model": ErrorAnswer}},
            summary="The model card of the loaded model")
async def models(request: Request) -> dict:
    detector = request.app.state.service.require_ready()
    card = {**detector.card, "providers": detector.providers}
    return {"models": [card]}
