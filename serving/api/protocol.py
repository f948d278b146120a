"""uvicorn's httptools protocol with the connection limits it lacks.

uvicorn times out only idle keep-alive connections, and only until their next byte: a socket that
never sends a request, or sends its head one byte at a time, is held forever; and httptools takes
headers of any size and number. This subclass adds, per connection:

- a deadline for each request head (from the connection's start or the head's first byte):
  a silent connection is closed, a slow head gets 408;
- a limit on the head's size and on its number of headers: 431;
- a cap on open connections: over it, the longest-idle connection that never completed a request
  is closed after a 503 (its client may be just about to send), else the longest idle one is
  closed, else the upload that has sent least of its body gets a 503, else the newcomer does.
  A request whose body is all in is never dropped for room, nor is a connection whose next
  request is already in its socket, unread (closing it then would reset the client mid-request);
- a refusal written here (400, 408, 431, 503) is followed by a lingering close, as nginx does:
  the server stops sending, then reads and drops what the client still sends for up to
  LINGER_S before it closes, so that the client reads its answer instead of a reset;
- the warnings a flood of clients can cause (garbage requests, refusals at the cap) are one
  line per period, with their count.

`weedscan serve` passes it to uvicorn as `http=`; its limits come from the WEEDSCAN_* settings.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import logging
import resource
import struct
import termios
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from serving.api.errors import ThrottledWarning, error_body, retry_after
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
    max_lingering: int  # connections lingering at once (beyond: the oldest is closed); not in the cap


@lru_cache(maxsize=1)
def limits_from_env() -> HeadLimits:
    """Read once per process: worker processes get the settings through the environment."""
    s = Settings()
    return HeadLimits(s.header_timeout_s, s.max_header_bytes, s.max_headers, s.max_connections,
                      s.retry_after_s, lingering_room(s.max_connections))


def lingering_room(max_connections: int) -> int:
    """MAX_LINGERING, or fewer where the open-file limit leaves less beside the connection cap
    (`weedscan serve` warns of such a limit): at the limit, accept() fails and new clients are reset."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_LINGERING
    return max(0, min(MAX_LINGERING, soft - max_connections - FILES_BESIDE_CONNECTIONS))


# The app's security headers (serving/api/headers.py), on the refusals written here too.
_REFUSAL_HEADERS = [b"content-type: application/json",
                    b"content-security-policy: " + PAGE_POLICY.encode(),
                    *(f"{name.lower()}: {value}".encode() for name, value in COMMON.items())]


LINGER_S = 2.0  # after a refusal, what the client still sends is read and dropped this long
LINGER_MAX_BYTES = 1 << 20  # ... up to this much (a frame or two)
VICTIM_TRIES = 8  # idle connections looked at for one to close (those with a request waiting are passed over)
MAX_LINGERING = 128  # connections lingering at once, where the open-file limit allows it
FILES_BESIDE_CONNECTIONS = 64  # open files a server needs besides its connections (model, pipes, logs)
_refusal_warning = ThrottledWarning()  # a connection refused at the cap
_invalid_warning = ThrottledWarning()  # a request that is not HTTP


class HeadRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    lingering: ClassVar[dict[GuardedHttpToolsProtocol, None]] = {}  # of this process, oldest first
    open_count = 0  # connections open in this process (the load shedder reads it)
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
        self._message_complete = True  # the current request's body is all in (or no request)
        self._lingering = False  # answered with a refusal: reading and dropping until closed
        self._lingered = 0
        self._linger_timer: asyncio.TimerHandle | None = None

    # --- connection -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _LingeringClose(transport, self)  # type: ignore[assignment]
        GuardedHttpToolsProtocol.open_count += 1
        self._last_active = next(_ticks)
        self._arm_head_timer()
        if len(self.connections) - len(self.lingering) > self.limits.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_drain_timer()
        self._cancel_trailer_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        self.lingering.pop(self, None)
        GuardedHttpToolsProtocol.open_count -= 1
        super().connection_lost(exc)

    def eof_received(self) -> None:
        if self._lingering:  # the client has read its answer and closed its side
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._lingering:  # after a refusal: dropped unread
            self._lingered += len(data)
            if self._lingered > LINGER_MAX_BYTES:
                self.transport.close()
            return
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
        _invalid_warning(msg)
        self.send_400_response(msg)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's plain-text 400, as the contract's JSON error with the security headers."""
        self._refuse(HeadRefused(400, "bad_request", msg))

    # --- parser callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_size, self._head_count = True, 0, 0
        self._body_received = self._hosts = 0
        self._message_complete = False
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
        if self.cycle is not None and self.open_count * 2 > self.limits.max_connections:
            # Over half the cap open: answered connections close rather than wait idle, so the
            # cap has no idle connection to close under a client about to reuse it.
            self.cycle.keep_alive = False

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
        self._message_complete = True
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
        return (not self.transport.is_closing() and not self._lingering
                and (self.cycle is None or self.cycle.response_complete))

    def _request_waiting(self) -> bool:
        """Bytes the client sent that the event loop has not read yet: on an idle connection, its
        next request on its way in (a busy loop reads it a turn later)."""
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return False
        try:
            unread = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return False
        return struct.unpack("i", unread)[0] > 0

    def _uploading(self) -> bool:
        """Its request's head is in and its body still coming, unanswered."""
        return (not self.transport.is_closing() and not self._lingering and not self._in_head
                and self.cycle is not None and not self.cycle.response_started
                and not self._message_complete)

    def _make_room(self) -> None:
        """Over the cap (lingering connections aside): close the connection idle longest
        (preferring those that never completed a request, which get a 503 first), else answer
        the upload that has sent least of its body with a 503 (a flood of bodies that never come
        must not shut out new clients, a liveness probe included), or refuse this new one when
        every other one has a whole request in (being answered, or held by the load shedder)."""
        others = [c for c in self.connections
                  if c is not self and isinstance(c, GuardedHttpToolsProtocol)]
        idle = [c for c in others if c._idle()]
        for _ in range(VICTIM_TRIES):
            if not idle:
                break
            victim = min(idle, key=lambda c: (c._completed > 0, c._last_active))
            if victim._request_waiting():
                idle.remove(victim)
                continue
            if victim._completed:  # between requests: closed, as an idle keep-alive timeout does
                victim._cancel_head_timer()
                victim.transport.close()
            else:  # its client may be about to send its first request: it reads why, not an EOF
                victim._refuse(HeadRefused(503, "overloaded", "too many open connections: this one had "
                                           "sent no request yet and made room; retry after the seconds "
                                           "in Retry-After"))
            return
        uploading = [c for c in others if c._uploading()]
        if not uploading:
            _refusal_warning("refused a connection: %d open, all with a request in "
                             "(WEEDSCAN_MAX_CONNECTIONS)", len(self.connections) - 1)
            self._refuse(HeadRefused(503, "overloaded", "too many open connections; retry after "
                                     "the seconds in Retry-After"))
            return
        min(uploading, key=lambda c: (c._body_received, c._last_active))._evict()

    def _evict(self) -> None:
        """Answer this connection's unfinished upload with a 503 to make room: its request is
        dropped (the app sees the client gone), the client reads why."""
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self._refuse(HeadRefused(503, "overloaded", "too many open connections: this upload, "
                                 "the one that had sent least, made room; retry after the "
                                 "seconds in Retry-After"))

    def _refuse(self, refusal: HeadRefused) -> None:
        """Answer with the contract's JSON error and close; the head is never handed on."""
        self._cancel_head_timer()
        self._cancel_trailer_timer()
        if self.transport.is_closing() or self._lingering:
            return
        if not self._in_head and self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # this request has its answer (or part of it): just close
            return
        body = error_body(refusal.code, refusal.message)
        headers = [*_REFUSAL_HEADERS, b"content-length: %d" % len(body), b"connection: close"]
        if refusal.status == 503:
            headers.append(b"retry-after: " + retry_after(self.limits.retry_after_s).encode())
        self.transport.write(STATUS_LINE[refusal.status] + b"\r\n".join(headers) + b"\r\n\r\n" + body)
        self._linger()

    def _linger(self) -> None:
        """Close after the answer without a reset: stop sending (FIN once the answer is out),
        read and drop what the client still sends, close when it closes or after LINGER_S.
        Closing with its unread bytes in the socket would make the kernel send a reset, which
        can destroy the answer before the client reads it."""
        self._cancel_drain_timer()
        self._unset_keepalive_if_required()
        if not self.transport.can_write_eof():
            self._lingering = True  # nothing to wait for: the close below is the plain one
            self.transport.close()
            return
        self._lingering = True
        if self.limits.max_lingering == 0:  # no file to spare: closed once the answer is written
            self.transport.close()
            return
        self.lingering[self] = None
        if len(self.lingering) > self.limits.max_lingering:
            oldest = next(iter(self.lingering))
            del self.lingering[oldest]
            oldest.transport.close()
        self.transport.write_eof()
        self.transport.resume_reading()
        self._linger_timer = self.loop.call_later(LINGER_S, self.transport.close)


class _LingeringClose:
    """The connection's transport, whose close() waits for the rest of an unread request body
    (a lingering close) when the answer comes before the body is all in: a 503 that closes its
    connection, a 408 for a stalled body. Everything else is the transport's own."""

    def __init__(self, transport: asyncio.Transport, protocol: GuardedHttpToolsProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def close(self) -> None:
        protocol = self._protocol
        if (protocol._lingering or protocol._message_complete or protocol._in_head
                or self._transport.is_closing()):
            self._transport.close()
        else:
            protocol._linger()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
