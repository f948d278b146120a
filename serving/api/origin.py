"""Which sites may talk to the server: a Host allow-list (DNS rebinding) and no cross-site writes.

A server on loopback without API keys is open to any web page the user visits: a page on
attacker.example can re-point its name at 127.0.0.1 (DNS rebinding) and read the answers, or post a
form to the API. The Host check refuses requests for a name the server is not known by; the
cross-site check refuses writes (POST, PUT, PATCH, DELETE) a browser sends on another site's
behalf. Robots and scripts send neither Origin nor Sec-Fetch-Site, and the page is same-origin, so
both keep working.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette._utils import parse_host_header
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.api.errors import error_response

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
# Probes ask these by whatever address they reach the server at; they tell nothing.
UNCHECKED_PATHS = frozenset({"/healthz", "/readyz"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_loopback_bind(host: str) -> bool:
    name = host.strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def default_allowed_hosts(bind_host: str) -> list[str]:
    """Bound to loopback: only its names (any port). Bound elsewhere (0.0.0.0, a LAN address):
    any name, since robots reach it by addresses the server cannot know."""
    return list(LOOPBACK_HOSTS) if is_loopback_bind(bind_host) else ["*"]


class HostCheckMiddleware(TrustedHostMiddleware):
    """Starlette's TrustedHostMiddleware (same patterns: exact names, `*.example.com`, `*`),
    answering in the API's JSON error shape with 421 instead of plain text, and leaving the
    health probes open."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        super().__init__(app, allowed_hosts=allowed_hosts, www_redirect=False)

    def host_allowed(self, host_header: str | None) -> bool:
        parsed = parse_host_header(host_header)
        if parsed is None:
            return False
        host = parsed.host.lower()
        return any(host == p or (p.startswith("*") and host.endswith(p[1:]))
                   for p in self.allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.allow_any or scope["type"] != "http" or scope["path"] in UNCHECKED_PATHS
                or self.host_allowed(Headers(scope=scope).get("host"))):
            await self.app(scope, receive, send)
            return
        response = error_response(421, "misdirected_request",
                                  "this server does not answer for that Host; set "
                                  "WEEDSCAN_ALLOWED_HOSTS to the names clients use")
        await response(scope, receive, send)


def _origin_key(scheme: str, netloc: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) with the scheme's default port filled in; None if unparsable."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None


def is_cross_site(headers: Headers, scheme: str) -> bool:
    """A browser's request on another origin's behalf: Sec-Fetch-Site says so, or Origin
    names another origin than the Host asked for (`null`: a sandboxed or file:// page)."""
    if headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site"):
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    parts = urlsplit(origin)
    if origin == "null" or not parts.scheme or not parts.netloc:
        return True
    return _origin_key(parts.scheme.lower(), parts.netloc) != _origin_key(scheme, headers.get("host", ""))


UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CrossSiteMiddleware:
    """Refuses (403) a write that a browser sends on behalf of another site."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] in UNSAFE_METHODS
                and is_cross_site(Headers(scope=scope), scope.get("scheme", "http"))):
            response = error_response(403, "cross_site_request",
                                      f"{scope['method']} requests from another site's page are refused")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
