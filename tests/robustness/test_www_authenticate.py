"""A 401 carries WWW-Authenticate: Bearer, through a real server with keys."""

from __future__ import annotations

from tests.serving.conftest import LiveServer


def test_401_names_bearer_scheme(shipped_model) -> None:  # noqa: ANN001
    server = LiveServer(shipped_model, env={"WEEDSCAN_API_KEYS": "k1"})
    try:
        r = server.http.post("/v1/detect", content=b"x", headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 401
        assert r.headers.get("www-authenticate", "").startswith("Bearer")
    finally:
        server.stop()
