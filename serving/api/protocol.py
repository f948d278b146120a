"""uvicorn's httptools protocol with the connection limits it lacks.

uvicorn times out only idle keep-alive connections, and only until their next byte: a socket that
never sends a request, or sends its head one byte at a time, is held forever; and httptools takes
headers of any size and number. This subclass adds, per connection:

- a deadline for each request head (from the connection's start or the head's first byte):
  a silent connection is closed, a slow head gets 408;
- a limit on the head's size and on its number of headers: 431;
- a cap on open connections: over it, the longest-idle connection that never completed a request
  is closed (else the longest idle one), or the newcomer gets 503 when none is idle.

`weedscan serve` passes it to uvicorn as `http=`; its limits come from the WEEDSCAN_* settings.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from serving.api.errors import error_body, retry_after
from serving.api.headers import COMMON, PAGE_POLICY
from serving.config import Settings

log = logging.getLogger("weedscan")

PROTOCOL_PATH = "serving.api.protocol:GuardedHttpToolsProtocol"  # for uvicorn.run(http=...)
_ticks = itertools.count()  # orders activity within one event-loop turn (loop.time() does not)


@dataclass(frozen=True)
class HeadLimits:
    timeout_s: float
    max_bytes: int
    max_count: int
    max_connections: int
    retry_after_s: int


@lru_cache(maxsize=1)
def limits_from_env() -> HeadLimits:
    """Read once per process: worker processes get the settings through the environment."""
    s = Settings()
    return HeadLimits(s.header_timeout_s, s.max_header_bytes, s.max_headers, s.max_connections,
                      s.retry_after_s)


# The app's security headers (serving/api/headers.py), on the refusals written here too.
_REFUSAL_HEADERS = [b"content-type: application/json",
                    b"content-security-policy: " + PAGE_POLICY.encode(),
                    *(f"{name.lower()}: {value}".encode() for name, value in COMMON.items())]


REFUSAL_LOG_EVERY_S = 10.0  # a flood of refused connections is one warning line per period
_refusals = {"logged_at": float("-inf"), "since": 0}


def _note_refusal(now: float, open_count: int) -> None:
    _refusals["since"] += 1
    if now - _refusals["logged_at"] >= REFUSAL_LOG_EVERY_S:
        log.warning("refused %d connection(s) since the last such line: %d open, all busy "
                    "(WEEDSCAN_MAX_CONNECTIONS)", _refusals["since"], open_count)
        _refusals["logged_at"], _refusals["since"] = now, 0


class HeadRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits_from_env()
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # between requests or inside a head (not yet complete)
        self._head_bytes = 0  # of the current head, counted per received chunk
        self._head_reset = False  # a new head began inside the current chunk
        self._head_size = self._head_count = 0  # exact, from the parser's callbacks
        self._last_active = 0  # a tick of _ticks
        self._completed = 0  # requests answered on this connection
        self._body_received = 0  # of the current request
        self._hosts = 0  # Host headers of the current request
        # The rest of a body the answer did not wait for (the app answered without reading it)
        # must arrive within the keep-alive time: each byte of it cancels uvicorn's keep-alive
        # timer, and nothing else would close a connection that trickles it for ever.
        self._drain_timer: asyncio.TimerHandle | None = None
        # A chunked body's trailer (header lines after the last chunk) is buffered by httptools
        # like a head, but outside it: its size counts with the head's, and it must arrive
        # within the head's deadline. After a chunk header and before its data the parser is
        # either there or about to stream a chunk.
        self._after_chunk_header = False
        self._trailer_bytes = 0  # received while the parser was in a trailer, per chunk
        self._feeds = self._chunk_header_feed = 0  # data_received calls; the last chunk header's
        self._trailer_timer: asyncio.TimerHandle | None = None

    # --- connection -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._last_active = next(_ticks)
        self._arm_head_timer()
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_drain_timer()
        self._cancel_trailer_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._last_active = next(_ticks)
        self._head_reset = False
        self._feeds += 1
        try:
            self._feed(data)
        except HeadRefused as refusal:
            self._refuse(refusal)
            return
        if self._after_chunk_header and not self.transport.is_closing():
            # A chunk header from an earlier feed and no data since: all of this went to a trailer.
            self._trailer_received(len(data) if self._chunk_header_feed < self._feeds else 0)
            return
        if self._in_head and not self.transport.is_closing():
            # A head still incomplete: httptools buffers it whole, so bound what it holds here
            # (undercounts by at most the chunk in which the head began).
            self._head_bytes = 0 if self._head_reset else self._head_bytes + len(data)
            if self._head_bytes > self.limits.max_bytes:
                self._refuse(self._too_large())

    def _feed(self, data: bytes) -> None:
        """uvicorn's data_received, with a refusal raised in a callback (which httptools wraps
        in its own error) answered as itself rather than as a 400."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, HeadRefused):
                raise exc.__context__ from None
            self._invalid()
        except httptools.HttpParserError:
            self._invalid()
        except httptools.HttpParserUpgrade:
            # The app has no WebSocket (or other upgraded) endpoint: the request is answered as
            # plain HTTP by the app, and the connection closed after it (the parser takes no
            # more requests on it).
            if self.cycle is not None:
                self.cycle.keep_alive = False

    def _should_upgrade_to_ws(self) -> bool:
        return False

    def _invalid(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's plain-text 400, as the contract's JSON error with the security headers."""
        self._refuse(HeadRefused(400, "bad_request", msg))

    # --- parser callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_size, self._head_count = True, 0, 0
        self._body_received = self._hosts = 0
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url), 0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4, 1)
        if self._in_head:  # a trailer's lines are counted, not added to the request's headers
            if len(name) == 4 and name.lower() == b"host":
                self._hosts += 1
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        if self._hosts > 1:  # RFC 9112, 3.2: which one the app would check is anyone's guess
            raise HeadRefused(400, "bad_request", "the request has more than one Host header")
        if self.url[:1] not in (b"/", b"*"):
            self._use_target_authority()
        super().on_headers_complete()

    def _use_target_authority(self) -> None:
        """An absolute-form target (`GET http://name/path`) names the host itself, and the
        server must go by it, not by the Host header (RFC 9112, 3.2.2): the Host the app checks
        becomes the target's."""
        try:
            target = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            raise HeadRefused(400, "bad_request", "the request target is malformed") from None
        if not target.host:
            raise HeadRefused(400, "bad_request", "the request target names no host")
        host = b"[%s]" % target.host if b":" in target.host else target.host  # IPv6
        authority = host if target.port is None else b"%s:%d" % (host, target.port)
        self.headers[:] = [(n, v) for n, v in self.headers if n.lower() != b"host"]
        self.headers.append((b"host", authority))

    def on_chunk_header(self) -> None:
        self._after_chunk_header, self._trailer_bytes = True, 0
        self._chunk_header_feed = self._feeds

    def on_chunk_complete(self) -> None:
        self._after_chunk_header, self._trailer_bytes = False, 0
        self._cancel_trailer_timer()

    def on_body(self, body: bytes) -> None:
        self._body_received += len(body)
        if self._after_chunk_header:  # a chunk's data: no trailer
            self._after_chunk_header, self._trailer_bytes = False, 0
            self._cancel_trailer_timer()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._after_chunk_header, self._trailer_bytes = False, 0
        self._cancel_trailer_timer()
        super().on_message_complete()
        self._in_head, self._head_bytes, self._head_reset = True, 0, True
        if self._drain_timer is not None:  # the unread rest of an answered body is in: idle now
            self._cancel_drain_timer()
            if (self.timeout_keep_alive_task is None and not self.pipeline
                    and not self.transport.is_closing()):
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def on_response_complete(self) -> None:
        self._completed += 1
        self._last_active = next(_ticks)
        super().on_response_complete()
        if (not self._in_head and self.cycle is not None and self.cycle.response_complete
                and self._drain_timer is None and not self.transport.is_closing()):
            self._drain_timer = self.loop.call_later(self.timeout_keep_alive, self._drain_timed_out)

    # --- limits -----------------------------------------------------------------------------
    def _count_head(self, size: int, count: int) -> None:
        self._head_size += size
        self._head_count += count
        if self._head_count > self.limits.max_count:
            raise HeadRefused(431, "too_many_headers",
                              f"more than {self.limits.max_count} request headers")
        if self._head_size > self.limits.max_bytes:
            raise self._too_large()

    def _too_large(self) -> HeadRefused:
        return HeadRefused(431, "headers_too_large",
                           f"the request head exceeds {self.limits.max_bytes} bytes")

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm_head_timer()  # a pipelined head waits for the answer before it
            return
        if self._head_size or self._head_bytes:
            self._refuse(HeadRefused(408, "request_timeout", "the request head did not arrive "
                                     f"within {self.limits.timeout_s:g} s"))
        else:  # a connection that sent nothing: just close it, as for an idle keep-alive
            self.transport.close()

    def _trailer_received(self, size: int) -> None:
        """A chunk of data fed with the parser between a chunk header and any chunk data:
        (part of) a trailer, bounded like a head."""
        self._trailer_bytes += size
        if self._head_size + self._trailer_bytes > self.limits.max_bytes:
            self._refuse(self._too_large())
        elif self._trailer_timer is None:
            self._trailer_timer = self.loop.call_later(self.limits.timeout_s, self._trailer_timed_out)

    def _cancel_trailer_timer(self) -> None:
        if self._trailer_timer is not None:
            self._trailer_timer.cancel()
            self._trailer_timer = None

    def _trailer_timed_out(self) -> None:
        self._trailer_timer = None
        self._refuse(HeadRefused(408, "request_timeout", "the chunked body's trailer did not "
                                 f"arrive within {self.limits.timeout_s:g} s"))

    def _cancel_drain_timer(self) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None

    def _drain_timed_out(self) -> None:
        self._drain_timer = None
        if not self.transport.is_closing():  # answered already: nothing more to say
            self.transport.close()

    def _idle(self) -> bool:
        return not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete)

    def _uploading(self) -> bool:
        """Its request's head is in and its body still coming, unanswered."""
        return (not self.transport.is_closing() and not self._in_head and self.cycle is not None
                and not self.cycle.response_started)

    def _make_room(self) -> None:
        """Over the cap: close the connection idle longest (preferring those that never
        completed a request), else the upload that has sent least of its body (a flood of
        bodies that never come must not shut out new clients, a liveness probe included), or
        refuse this new one when every other one has a request being answered."""
        others = [c for c in self.connections
                  if c is not self and isinstance(c, GuardedHttpToolsProtocol)]
        idle = [c for c in others if c._idle()]
        if idle:
            victim = min(idle, key=lambda c: (c._completed > 0, c._last_active))
        else:
            uploading = [c for c in others if c._uploading()]
            if not uploading:
                _note_refusal(self.loop.time(), len(self.connections) - 1)
                self._refuse(HeadRefused(503, "overloaded", "too many open connections"))
                return
            victim = min(uploading, key=lambda c: (c._body_received, c._last_active))
        victim._cancel_head_timer()
        victim.transport.close()

    def _refuse(self, refusal: HeadRefused) -> None:
        """Answer with the contract's JSON error and close; the head is never handed on."""
        self._cancel_head_timer()
        self._cancel_trailer_timer()
        if self.transport.is_closing():
            return
        if not self._in_head and self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # this request has its answer (or part of it): just close
            return
        body = error_body(refusal.code, refusal.message)
        headers = [*_REFUSAL_HEADERS, b"content-length: %d" % len(body), b"connection: close"]
        if refusal.status == 503:
            headers.append(b"retry-after: " + retry_after(self.limits.retry_after_s).encode())
        self.transport.write(STATUS_LINE[refusal.status] + b"\r\n".join(headers) + b"\r\n\r\n" + body)
        self.transport.close()
