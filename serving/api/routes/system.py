"""Health, readiness and metrics: open even when API keys are set."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from serving.api.deps import MetricsDep, ServiceDep
from serving.api.errors import error_response, retry_after
from serving.api.schemas import ErrorAnswer, Health

router = APIRouter()


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=Health, responses={503: {"model": ErrorAnswer}},
            summary="The model is loaded and warmed up")
async def readyz(service: ServiceDep) -> JSONResponse:
    if service.ready:
        return JSONResponse({"status": "ready"})
    message = f"model failed to load: {service.load_error}" if service.load_error else "model loading"
    return error_response(503, "not_ready", message,
                          {"Retry-After": retry_after(service.settings.retry_after_s)})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
