"""DNS rebinding and cross-site POSTs, over real HTTP. A server bound to loopback
answers only for loopback names (421 otherwise, in the JSON error shape; probes stay open), and a
POST a browser sends on another site's behalf (Origin, Sec-Fetch-Site) gets 403."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from serving.api.app import create_app
from serving.config import Settings
from tests import images
from tests.serving.conftest import LiveServer

JPEG = images.encode(images.field_like(64, 48), ".jpg")


def get(server: LiveServer, path: str, host: str) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", headers={"Host": host}, timeout=60)


def detect(server: LiveServer, **headers: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/detect", content=JPEG, timeout=60,
                      headers={"Content-Type": "image/jpeg", **headers})


def test_a_loopback_server_answers_only_for_loopback_names(live: LiveServer) -> None:
    port = live.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost",
                 f"LOCALHOST:{port}"):
        assert get(live, "/v1/models", host).status_code == 200, host
    for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.nip.io:{port}",
                 "", "[::1"):
        for path in ("/v1/models", "/", "/metrics", "/docs"):
            response = get(live, path, host)
            assert response.status_code == 421, (host, path, response.text)
            assert response.json()["error"]["code"] == "misdirected_request"
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        refused = detect(live, Host=host)
        assert refused.status_code == 421 and refused.json()["error"]["code"] == "misdirected_request"
        # liveness and readiness probes reach a server by any address
        assert get(live, "/healthz", host).status_code == 200
        assert get(live, "/readyz", host).status_code == 200
    assert detect(live).status_code == 200  # the connection-level state is intact


def test_cross_site_posts_are_refused(live: LiveServer) -> None:
    own = live.url  # http://127.0.0.1:PORT, the page's own origin
    cases = [({"Origin": "http://attacker.example"}, 403),
             ({"Origin": f"http://localhost:{live.port + 1}"}, 403),  # same site, other origin
             ({"Origin": "null"}, 403),  # a sandboxed frame or a file:// page
             ({"Sec-Fetch-Site": "cross-site"}, 403),
             ({"Sec-Fetch-Site": "same-site"}, 403),
             ({"Origin": own, "Sec-Fetch-Site": "same-origin"}, 200),
             ({"Origin": own}, 200),
             ({"Sec-Fetch-Site": "none"}, 200),  # typed by the user
             ({}, 200)]  # robots and scripts send neither
    for headers, status in cases:
        response = detect(live, **headers)
        assert response.status_code == status, (headers, response.text)
        if status == 403:
            assert response.json()["error"]["code"] == "cross_site_request"
    for path in ("/v1/detect/batch", "/v1/annotate"):
        response = httpx.post(f"{live.url}{path}", content=JPEG, timeout=60,
                              headers={"Content-Type": "image/jpeg",
                                       "Origin": "http://attacker.example"})
        assert response.status_code == 403, (path, response.text)
    # reads stay open to other origins (no CORS headers: their scripts cannot read them)
    assert httpx.get(f"{live.url}/healthz", headers={"Origin": "http://attacker.example"}).status_code == 200


def test_allowed_hosts_setting(shipped_model: Path) -> None:
    server = LiveServer(shipped_model, env={"WEEDSCAN_ALLOWED_HOSTS": "weedscan.farm,*.field.lan"})
    try:
        for host, status in (("weedscan.farm", 200), ("robot.field.lan:8000", 200),
                             (f"127.0.0.1:{server.port}", 421), ("field.lan.attacker.example", 421)):
            assert get(server, "/v1/models", host).status_code == status, host
    finally:
        log = server.stop()
    assert "Traceback" not in log, log[-4000:]


def test_default_host_list_follows_the_bind_address(shipped_model: Path) -> None:
    """Bound to 0.0.0.0, any name (robots use addresses the server cannot know); bound to
    loopback, loopback names only. In process, no model needed: a 404 path is enough."""
    wide = TestClient(create_app(Settings(model=shipped_model, host="0.0.0.0"), bound=True))
    assert wide.get("/nothing", headers={"Host": "192.168.1.20:8000"}).status_code == 404
    narrow = TestClient(create_app(Settings(model=shipped_model, host="127.0.0.1"), bound=True))
    assert narrow.get("/nothing", headers={"Host": "192.168.1.20:8000"}).status_code == 421
    assert narrow.get("/nothing", headers={"Host": "127.0.0.1:8000"}).status_code == 404
    # an app not told where it is bound (embedded, tests) checks Host only when asked to
    assert TestClient(create_app(Settings(model=shipped_model))).get("/nothing").status_code == 404
