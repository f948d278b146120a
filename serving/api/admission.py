"""Admission control: which request may send its body and take an inference slot, and what a
refused client is told to do (Retry-After).

`Admission` owns the counters (images in flight, bytes of bodies held, per client address) and
the record of refusals that sets Retry-After; the service and the load shedder in front of the
app ask it, and the routes go through one `Upload` per request (`InferenceService.upload`).

Retry-After grows with the refusals per answer of the last seconds (the queue of clients sent
away drains in about that time). Two figures: the clients refused per answer, where each client
address counts once a second however often it is refused, which every client is told; and an
address's own refusals per answer, which only that address is told when it is higher. A client
that ignores Retry-After and floods the server with retries thus raises its own Retry-After,
not everyone's. (Clients behind one address, a proxy or a NAT, share its own figure.)
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from starlette.requests import Request

from serving.api.bodies import (
    BodyPace,
    JsonModel,
    Part,
    read_batch_uploads,
    read_image_upload,
    read_json,
)
from serving.api.errors import RETRY_SPREAD, retry_after
from serving.api.metrics import Metrics
from serving.config import Settings, size_text
from serving.errors import Overloaded, ServiceUnavailable

COUNTED_REFUSALS_PER_ADDRESS = 1  # per second, towards the Retry-After every client is told
REMEMBERED_ADDRESSES = 10_000  # addresses whose own refusals are kept (the oldest forgotten)


class Pressure:
    """Refusals and answers per whole second over the last WINDOW_S seconds (event-loop only).
    `per_second_cap`: refusals beyond it within one second are not counted (one address's flood
    counts as that many)."""

    WINDOW_S = 3

    def __init__(self, per_second_cap: int | None = None) -> None:
        self._second = 0
        self._cap = per_second_cap
        self._counts: deque[list[int]] = deque([[0, 0]], maxlen=self.WINDOW_S)  # [refused, served]

    def _now(self) -> list[int]:
        second = int(time.monotonic())
        if second != self._second:
            for _ in range(min(self.WINDOW_S, second - self._second)):
                self._counts.append([0, 0])
            self._second = second
        return self._counts[-1]

    def refused(self) -> bool:
        """Count a refusal; False when this second's cap was reached (not counted)."""
        now = self._now()
        if self._cap is not None and now[0] >= self._cap:
            return False
        now[0] += 1
        return True

    def served(self) -> None:
        self._now()[1] += 1

    def ratio(self) -> float:
        """Refusals per answer over the window (0 when nothing was refused)."""
        self._now()
        refused = sum(c[0] for c in self._counts)
        return refused / max(1, sum(c[1] for c in self._counts))


class BodyMemoryFull(ServiceUnavailable):
    code = "overloaded"
    close_connection = True  # the rest of the body is not read


class Admission:
    """The counters behind admission, and Retry-After (all on the event loop)."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.inflight = 0
        self.body_bytes = 0  # of request bodies held now (see BodyHold)
        self.client_body_bytes: dict[str, int] = {}  # the same per client address
        self.pressure = Pressure()  # every refusal: a client's own figure when it has no address
        self._shared = Pressure()  # each address's refusals counted up to its cap per second
        self._per_address: OrderedDict[str, tuple[Pressure, Pressure]] = OrderedDict()  # own, capped
        self.on_release: Callable[[], None] | None = None  # told when a slot is given back

    # --- slots ------------------------------------------------------------------------------
    def full(self) -> bool:
        return self.inflight >= self.settings.max_inflight

    def refuse_if_full(self, client: str | None) -> None:
        if self.full():
            self.note_refused(client)
            raise Overloaded(f"the server is busy ({self.inflight} images in flight); "
                             "retry after the seconds in Retry-After")

    def slot(self, client: str | None = None) -> Slot:
        """An inference slot for `with` (refused with 503 when all are taken)."""
        self.refuse_if_full(client)
        return Slot(self, client)

    # --- refusals and Retry-After -----------------------------------------------------------
    def note_refused(self, client: str | None) -> None:
        """A request refused for load (by the app or by the shedder in front of it)."""
        self.metrics.rejected.inc()
        self.pressure.refused()
        if client is None:
            self._shared.refused()
            return
        own, capped = self._pressures(client)
        own.refused()
        if capped.refused():
            self._shared.refused()

    def note_served(self, client: str | None) -> None:
        self.pressure.served()
        self._shared.served()
        if client is not None and client in self._per_address:
            self._per_address[client][0].served()

    def _pressures(self, client: str) -> tuple[Pressure, Pressure]:
        found = self._per_address.get(client)
        if found is None:
            found = self._per_address[client] = (Pressure(), Pressure(COUNTED_REFUSALS_PER_ADDRESS))
            while len(self._per_address) > REMEMBERED_ADDRESSES:
                self._per_address.popitem(last=False)
        else:
            self._per_address.move_to_end(client)
        return found

    def retry_after_base(self, client: str | None = None) -> int:
        """Retry-After's lower bound for `client` now: WEEDSCAN_RETRY_AFTER_S, times the refusals
        per answer of the last seconds when that is more (each address counted up to its cap;
        an address's own figure when that is higher, for it alone), at most
        WEEDSCAN_RETRY_AFTER_MAX_S / RETRY_SPREAD: clients sent away are told to stay away about
        as long as the queue of them needs to drain."""
        ratio = self._shared.ratio()
        if client is None:
            ratio = self.pressure.ratio()
        elif client in self._per_address:
            ratio = max(ratio, self._per_address[client][0].ratio())
        base = self.settings.retry_after_s
        ceiling = max(base, self.settings.retry_after_max_s // RETRY_SPREAD)
        return int(min(ceiling, max(base, base * ratio)))

    def retry_after(self, client: str | None = None) -> str:
        return retry_after(self.retry_after_base(client))

    # --- bodies -----------------------------------------------------------------------------
    def hold_body(self, client: str | None = None) -> BodyHold:
        """Accounts for a request body's memory while the `with` block runs; `client` (its
        address) holds at most its share (WEEDSCAN_MAX_CLIENT_BODY_SHARE)."""
        return BodyHold(self, client)

    def body_pace(self) -> BodyPace:
        s = self.settings
        return BodyPace(s.body_timeout_s, s.body_min_rate_bytes, s.body_max_s)

    async def json_body(self, request: Request, model: type[JsonModel], limit: int) -> JsonModel:
        """A small JSON body (a write's parameters), read within `limit` bytes and the body
        pace, its memory held while it is read, and validated (415, 413, 408, 422)."""
        with self.hold_body(request.client.host if request.client else None) as hold:
            return await read_json(request, model, limit, self.body_pace(), hold.take)


class Slot:
    """Counts an in-flight request for as long as the `with` block runs."""

    def __init__(self, admission: Admission, client: str | None = None) -> None:
        self.admission = admission
        self.client = client

    def __enter__(self) -> Slot:
        self.admission.inflight += 1
        self.admission.metrics.inflight.inc()
        return self

    def __exit__(self, *exc: object) -> None:
        self.admission.inflight -= 1
        self.admission.metrics.inflight.dec()
        self.admission.note_served(self.client)
        if self.admission.on_release is not None:
            self.admission.on_release()


class BodyHold:
    """Bytes of one request body, counted against WEEDSCAN_MAX_BODY_MEMORY_MB as they arrive
    (a stalled upload holds only what it sent), and against its client's share of it, and given
    back when the `with` block ends."""

    def __init__(self, admission: Admission, client: str | None = None) -> None:
        self.admission = admission
        self.client = client
        self.taken = 0

    def take(self, size: int) -> None:
        admission = self.admission
        limit = admission.settings.max_body_memory_bytes
        if admission.body_bytes + size > limit:
            admission.note_refused(self.client)
            raise BodyMemoryFull(f"the server holds {size_text(admission.body_bytes)} of uploads, "
                                 f"its limit is {size_text(limit)}; retry after the seconds in "
                                 "Retry-After")
        if self.client is not None:
            held = admission.client_body_bytes.get(self.client, 0)
            share = admission.settings.max_client_body_bytes
            if held + size > share:
                admission.note_refused(self.client)
                raise BodyMemoryFull(f"this client's uploads hold {size_text(held)}, its share of "
                                     f"the server's upload memory is {size_text(share)}; retry "
                                     "after the seconds in Retry-After")
            admission.client_body_bytes[self.client] = held + size
        admission.body_bytes += size
        self.taken += size
        admission.metrics.body_bytes.inc(size)

    def __enter__(self) -> BodyHold:
        return self

    def __exit__(self, *exc: object) -> None:
        admission = self.admission
        admission.body_bytes -= self.taken
        admission.metrics.body_bytes.dec(self.taken)
        if self.client is not None and self.taken:
            left = admission.client_body_bytes.get(self.client, 0) - self.taken
            if left > 0:
                admission.client_body_bytes[self.client] = left
            else:
                admission.client_body_bytes.pop(self.client, None)
        self.taken = 0


class Upload:
    """One inference request's way in (`async with service.upload(request) as upload`): refused
    (503) before its body when the server is not ready or full; its body read within the size,
    pace and memory limits (`image()`, `images()`); then `slot()` for the work."""

    def __init__(self, admission: Admission, hold: BodyHold, request: Request) -> None:
        self._admission = admission
        self._hold = hold
        self._request = request

    @property
    def client(self) -> str | None:
        return self._hold.client

    async def image(self) -> bytes:
        """The one image of the body (raw, or multipart field `image`)."""
        s = self._admission.settings
        return await read_image_upload(self._request, s.max_upload_bytes,
                                       self._admission.body_pace(), self._hold.take)

    async def images(self) -> list[Part]:
        """The parts of a multipart batch body."""
        s = self._admission.settings
        return await read_batch_uploads(self._request, s.max_batch_bytes,
                                        s.max_batch_files, self._admission.body_pace(),
                                        self._hold.take)

    def slot(self) -> Slot:
        return self._admission.slot(self.client)

