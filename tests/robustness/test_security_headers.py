"""Every response carries Content-Security-Policy (framing forbidden),
X-Content-Type-Options: nosniff and Referrer-Policy: no-referrer; the page and its script and
stylesheet still load under the policy (no inline code for it to block)."""

from __future__ import annotations

import re

from tests import images

JPEG = images.encode(images.field_like(160, 120), ".jpg")


def assert_headers(response) -> None:  # noqa: ANN001
    csp = response.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, (response.url, csp)
    assert response.headers.get("x-content-type-options") == "nosniff", response.url
    assert response.headers.get("referrer-policy") == "no-referrer", response.url


def test_security_headers_on_every_kind_of_response(live) -> None:  # noqa: ANN001
    responses = [
        live.http.get("/"), live.http.get("/healthz"), live.http.get("/readyz"),
        live.http.get("/metrics"), live.http.get("/v1/models"), live.http.get("/docs"),
        live.http.get("/static/app.js"), live.http.get("/no/such/page"),
        live.http.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg"}),
        live.http.post("/v1/detect", content=b"not an image", headers={"Content-Type": "image/jpeg"}),
        live.http.post("/v1/detect?conf=7", content=JPEG, headers={"Content-Type": "image/jpeg"}),
    ]
    assert [r.status_code for r in responses] == [200] * 7 + [404, 200, 400, 422]
    for response in responses:
        assert_headers(response)


def test_the_page_loads_under_its_policy(live) -> None:  # noqa: ANN001
    page = live.http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    html = page.text
    # Nothing inline for the policy to block: no <script> body, <style>, style= or on*= attribute.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=", html, re.I), "inline style or handler"
    # Every script and stylesheet it names is served from here.
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert assets, html[:500]
    for asset in assets:
        assert live.http.get(asset).status_code == 200, asset
