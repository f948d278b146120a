"""Route dependencies (`Annotated[..., Depends()]`, as the FastAPI full-stack template does).

The app keeps its settings, metrics and service in `app.state` (see app.py); this module is the
one place that reads them. All are `async def`: a plain def would cost a thread-pool hop.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from serving.api.metrics import Metrics
from serving.api.service import InferenceService
from serving.config import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_service(request: Request) -> InferenceService:
    return request.app.state.service


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ServiceDep = Annotated[InferenceService, Depends(get_service)]
