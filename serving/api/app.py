"""The FastAPI application: wiring only; the work is in service.py and the route modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from serving.api.errors import install_error_handlers
from serving.api.headers import SecurityHeadersMiddleware
from serving.api.metrics import Metrics, MetricsMiddleware
from serving.api.origin import CrossSiteMiddleware, HostCheckMiddleware, default_allowed_hosts
from serving.api.request_id import RequestIdMiddleware
from serving.api.routes import datasets, detect, docs, jobs, models, page, system
from serving.api.routes.page import STATIC_DIR
from serving.api.service import InferenceService
from serving.api.shedding import LoadShedder
from serving.api.websocket import WebSocketAsHttp
from serving.config import Settings
from serving.detector import Detector
from serving.fields.catalogue import Catalogue
from serving.fields.store import CATALOGUE_FILE
from serving.jobs import JobRunner, mark_orphans_interrupted

API_VERSION = "1.0.0"


def create_app(settings: Settings | None = None, detector: Detector | None = None, *,
               bound: bool = False) -> FastAPI:
    """Build the app. The model loads in the background after start-up; /readyz tells when.
    `bound`: the app is served on `settings.host` (weedscan serve, uvicorn --factory), so the
    Host allow-list defaults from it; otherwise only WEEDSCAN_ALLOWED_HOSTS restricts Host."""
    settings = settings or Settings()
    metrics = Metrics()
    service = InferenceService(settings, metrics, detector)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start_loading()
        resume_jobs(app, settings)
        yield
        if getattr(app.state, "jobs", None) is not None:
            app.state.jobs.stop()
        service.close()
        metrics.process_exits()

    # /docs is served offline by routes/docs.py; ReDoc (from a CDN only) is off
    app = FastAPI(title="weedscan", version=API_VERSION, lifespan=lifespan, docs_url=None,
                  redoc_url=None,
                  description="Finds crops and weeds in field images. Runs offline; images are "
                              "neither stored nor logged, unless a user saves one to a "
                              "field dataset (/v1/datasets).")
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.service = service
    install_error_handlers(app, service.admission.retry_after)
    app.include_router(system.router)
    app.include_router(detect.router)
    app.include_router(models.router)
    app.include_router(datasets.router)
    app.include_router(jobs.router)
    app.include_router(page.router)
    app.include_router(docs.docs_router(app.openapi_url or "/openapi.json"))
    app.mount(docs.ASSETS_URL, docs.docs_assets(), name="docs-assets")
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    hosts = settings.allowed_hosts or (default_allowed_hosts(settings.host) if bound else ["*"])
    app.add_middleware(CrossSiteMiddleware)
    app.add_middleware(HostCheckMiddleware, allowed_hosts=hosts)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(LoadShedder, service=service)  # a refusal costs the least
    app.add_middleware(RequestIdMiddleware)  # every response echoes its id
    app.add_middleware(WebSocketAsHttp)  # outermost: a handshake is a plain GET to all
    return app


def resume_jobs(app: FastAPI, settings: Settings) -> None:
    """Where field data exists: jobs orphaned by a stopped server become interrupted, and queued
    ones start. Without a catalogue nothing is touched (no disk write before a user saves)."""
    catalogue = Catalogue(settings.data_dir.expanduser().absolute() / CATALOGUE_FILE)
    if not catalogue.path.is_file():
        return
    mark_orphans_interrupted(catalogue)
    app.state.jobs = JobRunner(catalogue, catalogue.path.parent, settings.models_dir)
    app.state.jobs.start()


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and `weedscan serve --workers N`."""
    return create_app(Settings(), bound=True)
