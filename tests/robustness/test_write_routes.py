"""The write routes of field datasets, jobs and model activation over real HTTP (a real
`weedscan serve` with an API key, its own models and data folders): every write needs the key,
bodies are bounded, names cannot escape their folder, bad input gets the JSON error shape, and
a refused write leaves nothing on disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import LiveServer
from tests.serving.registry_helpers import models_folder

KEY = "k-write-routes"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    root = tmp_path_factory.mktemp("writes")
    live = LiveServer(None, env={"WEEDSCAN_DATA_DIR": str(root / "data"), "WEEDSCAN_THREADS": "1",
                                 "WEEDSCAN_API_KEYS": KEY},
                      args=["--models-dir", str(models_folder(root))])
    yield live, root
    log = live.stop()
    assert "Traceback" not in log and "internal_error" not in log, log[-4000:]


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message"} and error["message"], error
    return error["code"]


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


WRITES = [("POST", "/v1/jobs", {"datasets": ["a"], "name": "b"}),
          ("DELETE", "/v1/jobs/1", None), ("POST", "/v1/jobs/1/rerun", None),
          ("POST", "/v1/models/weedscan/activate", None),
          ("POST", "/v1/datasets", {"name": "field", "crop": "carrot"}),
          ("DELETE", "/v1/datasets/field", None),
          ("PUT", "/v1/datasets/field/images/0123456789abcdef", {"labels": []})]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_every_write_needs_the_key(server: tuple[LiveServer, Path], method: str, path: str,
                                   body: dict | None) -> None:
    live, root = server
    before = files_under(root)
    response = httpx.request(method, f"{live.url}{path}", json=body, timeout=30)
    assert error_of(response, 401) == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert files_under(root) == before


def test_a_job_body_is_bounded_and_typed(server: tuple[LiveServer, Path]) -> None:
    live, root = server
    headers = {"X-API-Key": KEY}
    before = files_under(root)
    big = b'{"datasets": ["a"], "name": "b", "pad": "' + b"x" * 100_000 + b'"}'
    assert error_of(httpx.post(f"{live.url}/v1/jobs", content=big, timeout=30,
                               headers={**headers, "Content-Type": "application/json"}), 413)
    assert error_of(httpx.post(f"{live.url}/v1/jobs", content=b"datasets=a", timeout=30,
                               headers={**headers, "Content-Type": "text/plain"}), 415)
    assert error_of(httpx.post(f"{live.url}/v1/jobs", json={"datasets": ["a"], "name": "../../x"},
                               headers=headers, timeout=30), 422) == "invalid_parameter"
    assert error_of(httpx.post(f"{live.url}/v1/jobs", json={"datasets": ["../../etc"], "name": "b"},
                               headers=headers, timeout=30), 422)
    assert files_under(root) == before


@pytest.mark.parametrize("path", ["/v1/jobs/..%2F1", "/v1/jobs/-1", "/v1/jobs/99999999999999999999"])
def test_job_ids_are_checked(server: tuple[LiveServer, Path], path: str) -> None:
    live, _ = server
    response = httpx.get(f"{live.url}{path}", headers={"X-API-Key": KEY}, timeout=30)
    assert response.status_code in (404, 422), response.text  # 404: no route once %2F is a /
    error_of(response, response.status_code)


@pytest.mark.parametrize("name", ["..%2Fweedscan", "..%2F..%2Fmodels%2Fweedscan", "weedscan.onnx",
                                  "%2Ftmp%2Fx", "a" * 65])
def test_model_activation_cannot_reach_outside_the_models_folder(server: tuple[LiveServer, Path],
                                                                 name: str) -> None:
    live, root = server
    before = files_under(root)
    response = httpx.post(f"{live.url}/v1/models/{name}/activate", headers={"X-API-Key": KEY},
                          timeout=30)
    assert response.status_code in (404, 422), response.text
    error_of(response, response.status_code)
    assert files_under(root) == before
