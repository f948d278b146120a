"""Load shedding in front of the app: while every inference slot is taken, a new
POST to an inference route gets its 503 here, before the body is read and before the rest of
the middleware, routing and validation run. Under overload most requests are refused; each
refusal then costs a small fraction of the event loop's time that the full request path
would, and that CPU stays with inference. The answer is the app's own 503 (JSON error, jittered
Retry-After, security headers), counted in /metrics; the connection stays open (the unread
body is skipped by the server). Requests the app would refuse for other reasons (not ready,
bad input) still reach it, so each gets its own explanation.

A client that comes back on the same connection before its Retry-After is up (a robot that
ignores it and retries at once) gets its next 503 only when that time is up (at most
EARLY_HOLD_MAX_S): its refusals are held, not its connection, and cost a sleeping task instead
of a busy loop of refusals that would take the CPU inference needs. A first refusal is always
immediate.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from starlette.types import ASGIApp, Receive, Scope, Send

from serving.api.errors import error_body, retry_after
from serving.api.headers import COMMON, PAGE_POLICY
from serving.api.service import InferenceService

SHED_PATHS = frozenset({"/v1/detect", "/v1/detect/batch", "/v1/annotate"})
EARLY_HOLD_MAX_S = 5.0  # the longest an early comer's 503 is held
REMEMBERED_CLIENTS = 10_000  # connections whose Retry-After is remembered (oldest forgotten)


class LoadShedder:
    """Plain ASGI, outermost: refuses inference POSTs while the service is saturated."""

    def __init__(self, app: ASGIApp, service: InferenceService) -> None:
        self.app = app
        self.service = service
        self._not_before: OrderedDict[object, float] = OrderedDict()  # connection -> its retry time
        self._fixed_headers = [(b"content-type", b"application/json"),
                               (b"content-security-policy", PAGE_POLICY.encode()),
                               *((k.lower().encode(), v.encode()) for k, v in COMMON.items())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in SHED_PATHS
                or not self.service.saturated()):
            await self.app(scope, receive, send)
            return
        start, service = time.perf_counter(), self.service
        client = tuple(scope["client"]) if scope.get("client") else None  # one per connection
        early = self._not_before.get(client, 0.0) - time.monotonic() if client else 0.0
        if early > 0:  # back before its Retry-After: the answer waits until then
            await asyncio.sleep(min(early, EARLY_HOLD_MAX_S))
            if not service.saturated():  # room meanwhile: served after all
                await self.app(scope, receive, send)
                return
        service.note_shed()
        body = error_body("overloaded", f"the server is busy ({service.inflight} images in flight); "
                          "retry after the seconds in Retry-After")
        wait = retry_after(service.retry_after_base())
        if client:
            self._remember(client, time.monotonic() + int(wait))
        headers = [*self._fixed_headers, (b"content-length", str(len(body)).encode()),
                   (b"retry-after", wait.encode())]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        service.metrics.requests.labels(route=scope["path"], method="POST", status="503").inc()
        service.metrics.latency.labels(route=scope["path"]).observe(time.perf_counter() - start)

    def _remember(self, client: object, not_before: float) -> None:
        self._not_before[client] = not_before
        self._not_before.move_to_end(client)
        while len(self._not_before) > REMEMBERED_CLIENTS:
            self._not_before.popitem(last=False)
