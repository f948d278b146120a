"""API keys (WEEDSCAN_API_KEYS): with keys set, the API answers only a request that presents one of
them (`Authorization: Bearer KEY` or `X-API-Key: KEY`), refuses the rest with 401 and a Bearer
challenge, compares in constant time against every key, and never logs a key, right or wrong.
Health, metrics and the page stay open. In process and through a real server."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests import images
from tests.serving.conftest import LiveServer, make_client, wait_ready

JPEG = images.encode(images.field_like(320, 240), ".jpg")
KEYS = ["alpha-key-0001", "bravo-key-0002", "charlie-key-0003"]
WRONG = ["wrong-key-zulu-9999", "another-wrong-yankee-8888"]


@pytest.fixture(scope="module")
def keyed_server(shipped_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real server with three keys and its access log on (off by default), so a key could leak there."""
    server = LiveServer(shipped_model, env={"WEEDSCAN_API_KEYS": ",".join(KEYS), "WEEDSCAN_ACCESS_LOG": "true"},
                        log_path=tmp_path_factory.mktemp("keyed") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keyed_client(shipped_model: Path) -> Iterator[TestClient]:
    with make_client(shipped_model, api_keys=KEYS) as client:
        wait_ready(client.get)
        yield client


@pytest.fixture(scope="module", params=["in-process", "live-server"])
def keyed(request: pytest.FixtureRequest) -> TestClient | httpx.Client:
    if request.param == "in-process":
        return request.getfixturevalue("keyed_client")
    return request.getfixturevalue("keyed_server").http


def detect(http: TestClient | httpx.Client, **headers: str) -> httpx.Response:
    return http.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg", **headers})


def test_no_key_or_a_wrong_one_is_a_401_with_a_bearer_challenge(keyed: TestClient | httpx.Client) -> None:
    for response in (detect(keyed), detect(keyed, Authorization=f"Bearer {WRONG[0]}"),
                     detect(keyed, **{"X-API-Key": WRONG[1]}), keyed.get("/v1/models"),
                     detect(keyed, Authorization=f"Basic {KEYS[0]}")):  # a key, but not as a bearer token
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_every_configured_key_is_taken_in_either_header(keyed: TestClient | httpx.Client) -> None:
    for key in KEYS:
        assert detect(keyed, Authorization=f"Bearer {key}").status_code == 200
        assert detect(keyed, **{"X-API-Key": key}).status_code == 200
    assert keyed.get("/v1/models", headers={"X-API-Key": KEYS[0]}).status_code == 200


def test_health_metrics_and_the_page_need_no_key(keyed: TestClient | httpx.Client) -> None:
    for open_path in ("/healthz", "/readyz", "/metrics", "/"):
        assert keyed.get(open_path).status_code == 200, open_path


def test_keys_are_compared_in_constant_time_against_every_key(
        keyed_client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)  # serving.api.auth calls hmac.compare_digest
    cases = [({"Authorization": f"Bearer {WRONG[0]}"}, 401, WRONG[0].encode()),
             ({"X-API-Key": WRONG[1]}, 401, WRONG[1].encode()),
             ({"Authorization": f"Bearer {KEYS[0]}"}, 200, KEYS[0].encode()),  # the first: no early stop
             ({"X-API-Key": KEYS[2]}, 200, KEYS[2].encode())]
    for headers, status, presented in cases:
        calls.clear()
        assert detect(keyed_client, **headers).status_code == status
        # Every configured key was compared, with compare_digest, to what the client presented.
        assert sorted(b for _, b in calls) == sorted(k.encode() for k in KEYS), calls
        assert all(a == presented for a, _ in calls), calls
    calls.clear()
    assert detect(keyed_client).status_code == 401  # no key at all: nothing to compare
    assert keyed_client.get("/healthz").status_code == 200 and not calls  # open routes compare nothing


def test_keys_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.config import Settings

    monkeypatch.setenv("WEEDSCAN_API_KEYS", "a, b ,,c")
    assert Settings().api_keys == ["a", "b", "c"]


def test_no_key_right_or_wrong_is_ever_logged(keyed_server: LiveServer) -> None:
    http = keyed_server.http
    for key in [*KEYS, *WRONG]:
        detect(http, Authorization=f"Bearer {key}")
        detect(http, **{"X-API-Key": key})
        detect(http, Authorization="Basic " + base64.b64encode(f"user:{key}".encode()).decode())
    log = keyed_server.log()
    assert "POST /v1/detect" in log  # the access log is on, so a key had its chance to leak
    for secret in KEYS + WRONG:
        assert secret not in log, f"{secret} appears in the server log"
        assert base64.b64encode(secret.encode()).decode() not in log
        assert base64.b64encode(f"user:{secret}".encode()).decode() not in log
