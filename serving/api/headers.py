"""Security headers on every response the app sends (pages, API answers, errors, static files)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The web page loads only its own script and stylesheet (no inline code) and talks only to this
# server; its images are blob:/data: URLs of the user's own photos. No page may frame it.
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
               "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
               "form-action 'none'; frame-ancestors 'none'")
# /docs (routes/docs.py) loads Swagger UI from this server only; its CSS draws icons as data:
# images. Nothing inline, nothing from elsewhere, no framing.
DOCS_POLICY = ("default-src 'self'; img-src 'self' data:; connect-src 'self'; style-src 'self'; "
               "script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
               "frame-ancestors 'none'")
DOCS_PATHS = frozenset({"/docs"})
COMMON = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class SecurityHeadersMiddleware:
    """Adds Content-Security-Policy, X-Content-Type-Options and Referrer-Policy (plain ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = DOCS_POLICY if scope["path"] in DOCS_PATHS else PAGE_POLICY

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", policy)
                for name, value in COMMON.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
