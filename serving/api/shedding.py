"""Load shedding in front of the app: while every inference slot is taken, a new POST to an
inference route gets its 503 here, before the body is read and before the rest of the
middleware, routing and validation run. Under overload most requests are refused; each refusal
then costs a few tens of microseconds of the event loop instead of the full request path, and
that CPU stays with inference. The answer is the app's own 503 (JSON error, jittered
Retry-After, security headers), counted in /metrics; the connection stays open (the unread
body is skipped by the server). Requests the app would refuse for other reasons (not ready,
bad input) still reach it, so each gets its own explanation.

Refusals are held rather than repeated in a busy loop, which would take the CPU inference needs:

- a client back on the same connection before its Retry-After is up (a robot that ignores it
  and retries at once) gets its next answer only when that time is up;
- a client address refused more than REFUSALS_PER_ADDRESS_S times a second (after a burst of
  REFUSAL_BURST) has its further requests held for its turn, whatever connection they come
  on: a client that opens a new connection per retry cannot bypass the hold.

While over half of WEEDSCAN_MAX_CONNECTIONS are open, a refusal (of a body up to
DRAIN_MAX_BYTES, read and dropped first) closes its connection: a client told to wait
Retry-After seconds should not keep an idle connection meanwhile, which the cap would have to
close under it (the client would then find its next request cut off).

A hold lasts at most EARLY_HOLD_MAX_S and costs a sleeping task. A held request is served if
room comes meanwhile: when its hold ends, or as soon as the images in flight fall to half the
slots (so that held requests keep the inference lane busy instead of leaving it idle while
their clients wait). Otherwise it gets its 503 when the hold ends.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from typing import TypeVar

from starlette.types import ASGIApp, Receive, Scope, Send

from serving.api.errors import error_body
from serving.api.headers import COMMON, PAGE_POLICY
from serving.api.protocol import GuardedHttpToolsProtocol
from serving.api.service import InferenceService

_Key = TypeVar("_Key")  # what a client is remembered by: its connection or its address

SHED_PATHS = frozenset({"/v1/detect", "/v1/detect/batch", "/v1/annotate"})
EARLY_HOLD_MAX_S = 5.0  # the longest a refusal is held
REFUSALS_PER_ADDRESS_S = 20.0  # immediate refusals per second per client address; more are held
REFUSAL_BURST = 20  # immediate refusals an address may have at once before that rate applies
DRAIN_MAX_BYTES = 1 << 20  # a refused body read (and dropped) before closing its connection
DRAIN_MAX_S = 2.0  # ... if it arrives within this time
REMEMBERED_CLIENTS = 10_000  # connections and addresses remembered (the oldest forgotten)


class LoadShedder:
    """Plain ASGI, outermost: refuses inference POSTs while the service is saturated."""

    def __init__(self, app: ASGIApp, service: InferenceService) -> None:
        self.app = app
        self.service = service
        self._not_before: OrderedDict[object, float] = OrderedDict()  # connection -> its retry time
        self._turn: OrderedDict[str, float] = OrderedDict()  # address -> its next refusal's turn
        self._held: deque[asyncio.Future[None]] = deque()  # held requests, oldest first
        self._loop: asyncio.AbstractEventLoop | None = None
        service.admission.on_release = self._slot_released
        self._fixed_headers = [(b"content-type", b"application/json"),
                               (b"content-security-policy", PAGE_POLICY.encode()),
                               *((k.lower().encode(), v.encode()) for k, v in COMMON.items())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in SHED_PATHS
                or not self.service.saturated()):
            await self.app(scope, receive, send)
            return
        start, service = time.perf_counter(), self.service
        connection = tuple(scope["client"]) if scope.get("client") else None  # one per connection
        address = connection[0] if connection else None
        now = time.monotonic()
        hold = max(self._not_before.get(connection, 0.0) - now if connection else 0.0,
                   self._address_wait(address, now) if address else 0.0)
        if hold > 0:
            service.metrics.held.inc()
            if await self._hold(min(hold, EARLY_HOLD_MAX_S)):  # room meanwhile: served after all
                await self.app(scope, receive, send)
                return
        service.note_shed(address)
        body = error_body("overloaded", f"the server is busy ({service.inflight} images in flight); "
                          "retry after the seconds in Retry-After")
        wait = service.admission.retry_after(address)
        if connection:
            self._remember(self._not_before, connection, time.monotonic() + int(wait))
        headers = [*self._fixed_headers, (b"content-length", str(len(body)).encode()),
                   (b"retry-after", wait.encode())]
        if self._crowded() and await _drained(scope, receive):
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        service.metrics.requests.labels(route=scope["path"], method="POST", status="503").inc()
        service.metrics.latency.labels(route=scope["path"]).observe(time.perf_counter() - start)

    def _crowded(self) -> bool:
        return GuardedHttpToolsProtocol.open_count * 2 > self.service.settings.max_connections

    def _address_wait(self, address: str, now: float) -> float:
        """Seconds until this address's next refusal is due (a leaky bucket, GCRA): 0 within
        its burst and rate; the turn is taken now, so concurrent requests queue up."""
        interval = 1.0 / REFUSALS_PER_ADDRESS_S
        turn = max(self._turn.get(address, now), now)
        wait = turn - now - REFUSAL_BURST * interval
        # a request held for at most EARLY_HOLD_MAX_S takes no turn beyond that
        self._remember(self._turn, address,
                       min(turn + interval, now + REFUSAL_BURST * interval + EARLY_HOLD_MAX_S))
        return max(0.0, wait)

    async def _hold(self, seconds: float) -> bool:
        """Wait up to `seconds`, or until a slot is free after a wake-up; True when there is
        room for this request now."""
        loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return not self.service.saturated()
            woken: asyncio.Future[None] = loop.create_future()
            while self._held and self._held[0].done():  # those that timed out, oldest first
                self._held.popleft()
            self._held.append(woken)
            try:
                await asyncio.wait_for(woken, left)
            except TimeoutError:
                return not self.service.saturated()
            if not self.service.saturated():
                return True

    def _slot_released(self) -> None:
        """A slot was given back (on any thread): with half the slots or fewer in use, the
        oldest held request is woken to take one."""
        loop = self._loop
        if loop is None or not self._held:
            return
        if self.service.inflight > self.service.settings.max_inflight // 2:
            return
        try:
            loop.call_soon_threadsafe(self._wake_oldest)
        except RuntimeError:  # the loop has closed
            pass

    def _wake_oldest(self) -> None:
        while self._held:
            woken = self._held.popleft()
            if not woken.done():  # timed out or cancelled meanwhile: skip it
                woken.set_result(None)
                return

    @staticmethod
    def _remember(store: OrderedDict[_Key, float], key: _Key, value: float) -> None:
        store[key] = value
        store.move_to_end(key)
        while len(store) > REMEMBERED_CLIENTS:
            store.popitem(last=False)


async def _drained(scope: Scope, receive: Receive) -> bool:
    """Read and drop the request's body (up to DRAIN_MAX_BYTES, within DRAIN_MAX_S): True when
    it is all in, so that closing the connection cannot reset it under the answer."""
    declared = dict(scope.get("headers") or []).get(b"content-length", b"")
    if not declared.isdigit() or int(declared) > DRAIN_MAX_BYTES:
        return False
    try:
        async with asyncio.timeout(DRAIN_MAX_S):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return False
                if not message.get("more_body", False):
                    return True
    except TimeoutError:
        return False
