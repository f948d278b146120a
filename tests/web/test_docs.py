"""GET /docs in headless Chromium with every request off loopback blocked: Swagger UI comes from
this server (no CDN), runs under the docs Content-Security-Policy and lists the operations."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.serving.conftest import LiveServer

sync_api = pytest.importorskip(
    "playwright.sync_api", exc_type=ImportError,
    reason="Playwright for Python is not installed: .venv/bin/pip install -e '.[dev]'")
expect = sync_api.expect

pytestmark = pytest.mark.slow
OPERATIONS = ["/v1/detect", "/v1/detect/batch", "/v1/annotate", "/v1/models", "/healthz"]


@pytest.fixture
def offline_page(browser: Any) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A page that can reach 127.0.0.1 only; yields it, the blocked URLs and console errors."""
    context = browser.new_context()
    blocked: list[str] = []

    def loopback_only(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1" or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            blocked.append(url)
            route.abort("internetdisconnected")

    context.route("**/*", loopback_only)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page, blocked, errors
    context.close()


def test_docs_render_offline(web_server: LiveServer, offline_page: tuple[Any, list[str], list[str]]) -> None:
    page, blocked, errors = offline_page
    response = page.goto(f"{web_server.url}/docs")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "https:" not in csp and "unsafe" not in csp
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("weedscan", timeout=30_000)
    paths = page.locator(".opblock-summary-path")
    expect(paths.first).to_be_visible()
    shown = [text.replace("\u200b", "") for text in paths.all_inner_texts()]
    assert set(OPERATIONS) <= set(shown), shown
    page.locator(".opblock-summary", has_text="/v1/detect").first.click()  # open one: it renders
    expect(page.locator(".opblock-body .parameters").first).to_contain_text("conf")
    assert blocked == [], f"/docs tried to leave the machine: {blocked}"
    assert errors == [], errors  # no CSP violation, no failed script
