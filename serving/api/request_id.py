"""X-Request-ID: a request's id, when well formed, comes back as a header of its response,
whatever the response (an answer, a refusal by the load shedder, an error), so that a client
matches every response to what it sent."""

from __future__ import annotations

import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.answer import FRAME_TAG_PATTERN

HEADER = b"x-request-id"
_WELL_FORMED = re.compile(FRAME_TAG_PATTERN.encode())


def request_id(scope: Scope) -> str | None:
    """The request's X-Request-ID when it has exactly one that is well formed (else None: a
    malformed one is refused by the detect routes, 422, and never echoed)."""
    values = [value for name, value in scope.get("headers", ()) if name == HEADER]
    if len(values) != 1 or not _WELL_FORMED.fullmatch(values[0]):
        return None
    return values[0].decode("ascii")


class RequestIdMiddleware:
    """Echoes a well-formed X-Request-ID on the response (plain ASGI: no cost when absent)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tag = request_id(scope) if scope["type"] == "http" else None
        if tag is None:
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = tag
            await send(message)

        await self.app(scope, receive, send_with_id)
