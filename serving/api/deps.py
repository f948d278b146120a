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
from serving.fields.store import FieldStore
from serving.jobs import JobRunner


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_service(request: Request) -> InferenceService:
    return request.app.state.service


async def get_fields(request: Request) -> FieldStore:
    """The field datasets' store, made on first use from the settings (it touches no disk until
    a write)."""
    store = getattr(request.app.state, "fields", None)
    if store is None:
        settings: Settings = request.app.state.settings
        store = FieldStore(settings.data_dir, int(settings.max_data_gb * 1024 ** 3),
                           settings.max_pixels)
        request.app.state.fields = store
    return store


async def get_jobs(request: Request) -> JobRunner:
    """The job runner, started on first use (app.py starts it at start-up where jobs exist)."""
    runner = getattr(request.app.state, "jobs", None)
    if runner is None:
        store = await get_fields(request)
        runner = JobRunner(store.catalogue, store.data_dir, request.app.state.settings.models_dir)
        request.app.state.jobs = runner
        runner.start()
    return runner


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ServiceDep = Annotated[InferenceService, Depends(get_service)]
FieldsDep = Annotated[FieldStore, Depends(get_fields)]
JobsDep = Annotated[JobRunner, Depends(get_jobs)]
