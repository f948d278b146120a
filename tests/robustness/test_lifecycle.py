"""The app's lifespan may end and start again on the same app object (test clients, schemathesis,
an embedding server): a request after the end gets a 503, and the restarted app serves again."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from serving.api.app import create_app
from serving.config import Settings
from tests import images
from tests.serving.conftest import wait_ready

JPEG = images.encode(images.field_like(320, 240), ".jpg")


def detect(client: TestClient):  # noqa: ANN201
    return client.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg"})


def test_a_request_after_shutdown_is_503_and_a_restart_serves_again(shipped_model: Path) -> None:
    client = TestClient(create_app(Settings(model=shipped_model, threads=1)),
                        raise_server_exceptions=False)
    with client:
        wait_ready(client.get)
        assert detect(client).status_code == 200
    late = detect(client)  # the lifespan has ended: not ready, rather than a 500
    assert late.status_code == 503, late.text
    assert late.json()["error"]["code"] == "not_ready" and "Retry-After" in late.headers
    with client:
        wait_ready(client.get)
        again = detect(client)
        assert again.status_code == 200, again.text
