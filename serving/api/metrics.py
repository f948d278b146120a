"""Prometheus metrics, on a registry of the app's own (several apps may live in one process)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
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
                              registry=self.registry)
        self.rejected = Counter("weedscan_overload_rejections_total",
                                "Requests refused with 503 because the server was full",
                                registry=self.registry)
        self.detections = Counter("weedscan_detections_total", "Boxes returned, by class",
                                  ["class_name"], registry=self.registry)
        self.model = Info("weedscan_model", "The loaded model", registry=self.registry)


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
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(route=route, method=scope["method"], status=str(status)).inc()
            self.metrics.latency.labels(route=route).observe(time.perf_counter() - start)
