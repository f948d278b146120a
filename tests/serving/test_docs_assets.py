"""/docs is served from this server: its page, start-up script and Swagger UI's files (from the
fastapi-offline package), under a Content-Security-Policy of 'self' only. The browser test is
tests/web/test_docs.py."""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient


def check_docs(http: TestClient | httpx.Client) -> None:
    page = http.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "http" not in csp and "script-src 'self';" in csp
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and all(ref.startswith("/docs/") for ref in refs), refs  # nothing from elsewhere
    assert "<script>" not in page.text  # no inline code: the policy would refuse it
    for ref in refs:
        assert http.get(ref).status_code == 200, ref
    start = http.get("/docs/start.js").text
    assert '"url": "/openapi.json"' in start and '"validatorUrl": null' in start
    assert http.get("/redoc").status_code == 404  # ReDoc comes from a CDN only: off


def test_docs_are_served_from_this_server_under_a_strict_policy(http: TestClient | httpx.Client) -> None:
    check_docs(http)
