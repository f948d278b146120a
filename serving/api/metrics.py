"""Prometheus metrics, on a registry of the app's own (several apps may live in one process).

With `weedscan serve --workers N`, PROMETHEUS_MULTIPROC_DIR is set for the workers: each keeps its
values in a small file there and every scrape, whichever worker answers it, adds them all up.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest, multiprocess
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30)


MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_DIR_VARIABLE))


@contextmanager
def worker_metrics_dir(workers: int) -> Iterator[Path | None]:
    """For several workers: a fresh folder for their metric files (in memory under /dev/shm where
    Linux offers it), handed down through the environment and removed afterwards."""
    if workers < 2 or multiprocess_mode():
        yield None
        return
    in_memory = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="weedscan-metrics-", dir=in_memory))
    os.environ[MULTIPROC_DIR_VARIABLE] = str(path)
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_DIR_VARIABLE, None)
        shutil.rmtree(path, ignore_errors=True)


# prometheus_client's file of a live-only gauge (livesum, liveall, livemax ...) of process PID.
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def process_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): os.kill said it exists


def forget_dead_processes(path: str | Path) -> list[int]:
    """Drop the live gauges (in-flight counts) of worker processes that died without saying so
    (SIGKILL, out of memory): their files would count in every scrape for good. Counters and
    histograms of a dead worker stay, as they should."""
    pids = {int(m.group(1)) for name in os.listdir(path) if (m := _LIVE_GAUGE_FILE.fullmatch(name))}
    dead = sorted(pid for pid in pids if not process_alive(pid))
    for pid in dead:
        try:
            multiprocess.mark_process_dead(pid, str(path))
        except FileNotFoundError:
            pass  # another worker's scrape removed it first
    return dead


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = multiprocess_mode()
        self.registry = CollectorRegistry()
        self.requests = Counter("weedscan_requests_total", "HTTP requests by route and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("weedscan_request_seconds", "HTTP request latency by route",
                                 ["route"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.inference = Histogram("weedscan_inference_seconds",
                                   "Model time per image (letterbox, ONNX Runtime, decoding)",
                                   buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.decode = Histogram("weedscan_decode_seconds", "Image decoding time per image",
                                buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.inflight = Gauge("weedscan_inflight_requests", "Images being decoded or inferred now",
                              registry=self.registry, multiprocess_mode="livesum")
        self.body_bytes = Gauge("weedscan_request_body_bytes",
                                "Bytes of request bodies received and held in memory now",
                                registry=self.registry, multiprocess_mode="livesum")
        self.inflight_pixels = Gauge("weedscan_inflight_pixels",
                                     "Decoded pixels of the images being decoded or inferred now",
                                     registry=self.registry, multiprocess_mode="livesum")
        self.rejected = Counter("weedscan_overload_rejections_total",
                                "Requests refused with 503 because the server was full",
                                registry=self.registry)
        self.held = Counter("weedscan_overload_holds_total",
                            "Requests held before their answer while the server was full: back "
                            "before their Retry-After, or from an address over its refusal rate",
                            registry=self.registry)
        # The model that answered each detect, batch or annotate request (?model= or the active one).
        self.model_requests = Counter("weedscan_model_requests_total",
                                      "Detect, batch and annotate requests by model and status",
                                      ["model", "status"], registry=self.registry)
        self.model_latency = Histogram("weedscan_model_request_seconds",
                                       "Detect, batch and annotate latency by model", ["model"],
                                       buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.detections = Counter("weedscan_detections_total", "Boxes returned, by class",
                                  ["class_name"], registry=self.registry)
        # Info does not work across processes; a gauge at 1 with the same labels reads the same.
        self._model_info: Info | Gauge = (
            # per worker (a `pid` label): after a swap, every worker's active model shows
            Gauge("weedscan_model_info", "The active model",
                  ["name", "version", "sha256", "engine", "precision", "providers"],
                  registry=self.registry, multiprocess_mode="liveall")
            if self.multiprocess else Info("weedscan_model", "The active model", registry=self.registry))
        self._active_info: dict[str, str] | None = None

    def set_model(self, info: dict[str, str]) -> None:
        """The active model (after a swap: the new one)."""
        if isinstance(self._model_info, Gauge):
            if self._active_info and self._active_info != info:
                self._model_info.labels(**self._active_info).set(0)
            self._active_info = info
            self._model_info.labels(**info).set(1)
        else:
            self._model_info.info(info)

    def exposition(self) -> bytes:
        """The text /metrics serves: this process's metrics, or all workers' added up."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        forget_dead_processes(os.environ[MULTIPROC_DIR_VARIABLE])
        gathered = CollectorRegistry()
        multiprocess.MultiProcessCollector(gathered)
        return generate_latest(gathered)

    def process_exits(self) -> None:
        """Drop this worker's live gauges (its in-flight count) from the shared totals."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())


_MODEL_KEY = "weedscan_model"


def note_model(scope: Scope, name: str) -> None:
    """Label this request's metrics with the model that answers it (read by MetricsMiddleware)."""
    scope.setdefault("state", {})[_MODEL_KEY] = name


class MetricsMiddleware:
    """Counts requests by route and status and times them. Plain ASGI: Starlette's
    BaseHTTPMiddleware would run every request through an extra task and memory stream."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception that escapes every handler ends as a 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            route = route_label(scope)
            self.metrics.requests.labels(route=route, method=scope["method"], status=str(status)).inc()
            elapsed = time.perf_counter() - start
            self.metrics.latency.labels(route=route).observe(elapsed)
            model = scope.get("state", {}).get(_MODEL_KEY)  # set by the detect routes
            if model is not None:
                self.metrics.model_requests.labels(model=model, status=str(status)).inc()
                self.metrics.model_latency.labels(model=model).observe(elapsed)


def route_label(scope: Scope) -> str:
    """The matched route's path template (`/v1/detect`, the `/static` mount), or `unmatched`.
    FastAPI puts only its own API routes in scope["route"]; for the others (the static mount,
    /docs) the route is the router's entry whose endpoint the request went to."""
    route = scope.get("route")
    endpoint = scope.get("endpoint")
    if route is None and endpoint is not None:
        route = next((r for r in getattr(scope.get("router"), "routes", ())
                      if getattr(r, "endpoint", None) is endpoint or getattr(r, "app", None) is endpoint), None)
    return getattr(route, "path", None) or "unmatched"
