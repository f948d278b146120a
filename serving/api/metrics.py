"""Prometheus metrics, on a registry of the app's own (several apps may live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

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
