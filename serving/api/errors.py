"""Every error leaves as JSON {"error": {"code", "message"}} with the contract's status."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from serving.answer import ErrorAnswer
from serving.errors import ClientError, ServiceUnavailable

log = logging.getLogger("weedscan")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
# nginx's "client closed request": the client left before its body arrived. Nobody reads the
# answer; the status is for /metrics, apart from the server's own failures (500).
CLIENT_CLOSED_REQUEST = 499


# Retry-After spreads refused clients over [base, RETRY_SPREAD x base] seconds at random, so that
# they do not all come back in the same second and be refused again.
RETRY_SPREAD = 3


def retry_after(base_s: int) -> str:
    """A Retry-After value: whole seconds, uniformly drawn from base_s to RETRY_SPREAD x base_s."""
    return str(random.randint(base_s, RETRY_SPREAD * base_s))


WARNING_EVERY_S = 10.0  # a warning that can come in floods: one line per period, with the count


class ThrottledWarning:
    """A warning a flood of clients can cause (refusals, clients that leave, garbage requests):
    logged at most once per `every_s`, saying how many it stands for, so that an overload or
    an attack cannot fill the log and take the CPU that answers need."""

    def __init__(self, every_s: float = WARNING_EVERY_S) -> None:
        self.every_s = every_s
        self._logged_at = float("-inf")
        self._since = 0

    def __call__(self, message: str, *args: object) -> None:
        self._since += 1
        now = time.monotonic()
        if now - self._logged_at < self.every_s:
            return
        if self._since > 1:
            message += f" (and {self._since - 1} more such in the last {self.every_s:g} s)"
        log.warning(message, *args)
        self._logged_at, self._since = now, 0


def error_body(code: str, message: str) -> bytes:
    """The contract's JSON error, compact: for the refusals written below the app (protocol, shedder)."""
    return ErrorAnswer.of(code, message).model_dump_json().encode()


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorAnswer.of(code, message).model_dump(), status_code=status,
                        headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body"))
        msg = "unknown parameter (see /docs)" if err.get("type") == "extra_forbidden" else err.get("msg")
        parts.append(f"{where}: {msg}" if where else str(msg))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI, retry_after_for: Callable[[str | None], str]) -> None:
    """`retry_after_for(client address)`: the Retry-After a 503 tells that client."""
    client_left_warning = ThrottledWarning()

    @app.exception_handler(ClientError)
    async def client_error(request: Request, exc: ClientError) -> JSONResponse:
        headers = None
        if isinstance(exc, ServiceUnavailable):
            headers = {"Retry-After": retry_after_for(request.client.host if request.client else None)}
        elif exc.status == 401:  # RFC 9110: a 401 names the scheme it wants
            headers = {"WWW-Authenticate": 'Bearer realm="weedscan"'}
        if getattr(exc, "close_connection", False):  # refused mid-body: the rest is not read
            headers = {**(headers or {}), "Connection": "close"}
        return error_response(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(ClientDisconnect)
    async def client_left(request: Request, exc: ClientDisconnect) -> JSONResponse:
        client_left_warning("client closed the connection during %s %s", request.method,
                            request.url.path)
        return error_response(CLIENT_CLOSED_REQUEST, "client_closed_request",
                              "the client closed the connection before the request was read")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_parameter", _describe_validation(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, _HTTP_CODES.get(exc.status_code, "http_error"),
                              str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "the server failed on this request; "
                              "it has been logged")
