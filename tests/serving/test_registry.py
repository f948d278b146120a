"""Several models in one server, in process: the listing and its states, broken models,
?model= per request, activation (auth, cross-site, persistence), the LRU cap, following the
folder when another process changes it, and per-model metrics."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving import registry as registry_module
from serving.api.app import create_app
from serving.api.schemas import ModelsAnswer
from serving.config import Settings
from serving.detector import Detector
from serving.models_dir import ACTIVE_FILE, read_active, write_active
from serving.registry import ModelRegistry
from tests import images
from tests.serving.conftest import wait_ready
from tests.serving.registry_helpers import add_broken, add_copy, models_folder

JPEG = images.encode(images.field_like(320, 240), ".jpg")
RAW = {"Content-Type": "image/jpeg"}


def open_client(folder: Path, **settings: object) -> TestClient:
    client = TestClient(create_app(Settings(models_dir=folder, threads=1, **settings)),
                        raise_server_exceptions=False)
    client.__enter__()
    wait_ready(client.get)
    return client


def listing(client: TestClient) -> dict:
    body = client.get("/v1/models").json()
    ModelsAnswer.model_validate(body)
    return body


def states(client: TestClient) -> dict[str, str]:
    return {m["name"]: m["state"] for m in listing(client)["models"]}


def wait_for(predicate, timeout: float = 30.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def detect(client: TestClient, **params: object):  # noqa: ANN201
    return client.post("/v1/detect", content=JPEG, headers=RAW, params=params)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    return models_folder(tmp_path, "weedscan-b", "weedscan-c")


def test_every_model_is_listed_with_its_state_and_broken_ones_with_a_reason(tmp_path: Path) -> None:
    folder = models_folder(tmp_path, "weedscan-b")
    reasons = add_broken(folder)
    client = open_client(folder)
    try:
        # the active model is loaded first; the others are checked right after, one by one
        wait_for(lambda: all(states(client).get(name) == "broken" for name in reasons))
        body = listing(client)
        assert body["active"] == "weedscan"
        found = {m["name"]: m for m in body["models"]}
        assert set(found) == {"weedscan", "weedscan-b", *reasons}
        assert found["weedscan"]["state"] == "loaded" and found["weedscan"]["active"] is True
        assert found["weedscan"]["providers"]
        assert found["weedscan-b"]["state"] == "available" and "providers" not in found["weedscan-b"]
        assert found["weedscan-b"]["lineage"] == found["weedscan"]["lineage"]
        for name, why in reasons.items():
            assert found[name]["state"] == "broken" and why in found[name]["reason"], found[name]
        # broken ones never stop the others
        assert detect(client, model="weedscan-b").status_code == 200
    finally:
        client.__exit__(None, None, None)


def test_a_request_picks_its_model_and_every_answer_names_it(folder: Path) -> None:
    client = open_client(folder)
    try:
        assert detect(client).json()["model"]["name"] == "weedscan"
        answer = detect(client, model="weedscan-b").json()
        assert answer["model"]["name"] == "weedscan-b" and answer["model"]["version"].endswith("weedscan-b")
        assert states(client)["weedscan-b"] == "loaded"  # loaded on demand, then kept
        batch = client.post("/v1/detect/batch", params={"model": "weedscan-c"},
                            files=[("images", ("a.jpg", JPEG, "image/jpeg"))]).json()
        assert batch["results"][0]["model"]["name"] == "weedscan-c"
        drawn = client.post("/v1/annotate", content=JPEG, headers=RAW, params={"model": "weedscan-b"})
        assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/jpeg"
        unknown = detect(client, model="nope")
        assert unknown.status_code == 422
        error = unknown.json()["error"]
        assert error["code"] == "invalid_parameter"
        assert "nope" in error["message"] and "weedscan, weedscan-b, weedscan-c" in error["message"]
        assert detect(client, model="weedscan-b", classes="tree").status_code == 422  # its classes
        green = detect(client, model="weedscan-b", mode="green")
        assert green.status_code == 422 and "mode=model" in green.json()["error"]["message"]
        assert detect(client, mode="green").json()["model"]["name"] == "green-on-brown"
        metrics = client.get("/metrics").text
        assert 'weedscan_model_requests_total{model="weedscan-b",status="200"} 2.0' in metrics
        assert 'weedscan_model_requests_total{model="weedscan",status="200"} 1.0' in metrics
        assert 'weedscan_model_request_seconds_count{model="weedscan-c"} 1.0' in metrics
    finally:
        client.__exit__(None, None, None)


def test_activation_swaps_the_default_and_is_kept_in_the_folder(folder: Path) -> None:
    client = open_client(folder)
    try:
        answer = client.post("/v1/models/weedscan-b/activate")
        assert answer.status_code == 200 and answer.json()["active"] == "weedscan-b"
        assert detect(client).json()["model"]["name"] == "weedscan-b"
        assert read_active(folder) == "weedscan-b"
        assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]  # atomic: no leftovers
        assert "weedscan_model_info{" in client.get("/metrics").text
        missing = client.post("/v1/models/nope/activate")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_model"
        assert client.post("/v1/models/..%2F..%2Fetc/activate").status_code == 404
        # rollback
        assert client.post("/v1/models/weedscan/activate").json()["active"] == "weedscan"
        assert detect(client).json()["model"]["name"] == "weedscan"
    finally:
        client.__exit__(None, None, None)
    again = open_client(folder)  # a restart keeps the choice
    try:
        assert listing(again)["active"] == "weedscan"
    finally:
        again.__exit__(None, None, None)


def test_the_active_model_survives_a_restart_and_a_pin_wins_at_start(folder: Path) -> None:
    write_active(folder, "weedscan-c")
    client = open_client(folder)
    try:
        assert listing(client)["active"] == "weedscan-c"
        assert detect(client).json()["model"]["name"] == "weedscan-c"
    finally:
        client.__exit__(None, None, None)
    pinned = open_client(folder, model=folder / "weedscan-b.onnx")
    try:
        assert listing(pinned)["active"] == "weedscan-b"
        assert read_active(folder) == "weedscan-c"  # a pin does not rewrite the folder
    finally:
        pinned.__exit__(None, None, None)


def test_a_broken_active_choice_falls_back_to_a_good_model(tmp_path: Path) -> None:
    folder = models_folder(tmp_path)
    add_broken(folder)
    (folder / ACTIVE_FILE).write_text(json.dumps({"active": "damaged"}), encoding="utf-8")
    client = open_client(folder)
    try:
        assert listing(client)["active"] == "weedscan"
        broken = client.post("/v1/models/damaged/activate")
        assert broken.status_code == 409 and broken.json()["error"]["code"] == "model_broken"
        assert listing(client)["active"] == "weedscan"
    finally:
        client.__exit__(None, None, None)


def test_activation_needs_the_api_key_and_is_refused_cross_site(folder: Path) -> None:
    client = open_client(folder, api_keys=["k1"])
    try:
        assert client.post("/v1/models/weedscan-b/activate").status_code == 401
        assert client.get("/v1/models").status_code == 401
        cross = client.post("/v1/models/weedscan-b/activate", headers={
            "X-API-Key": "k1", "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403 and cross.json()["error"]["code"] == "cross_site_request"
        assert read_active(folder) is None
        ok = client.post("/v1/models/weedscan-b/activate", headers={"X-API-Key": "k1"})
        assert ok.status_code == 200 and ok.json()["active"] == "weedscan-b"
    finally:
        client.__exit__(None, None, None)


def test_loaded_models_are_capped_least_recently_used_first(folder: Path) -> None:
    client = open_client(folder, max_loaded_models=2)
    try:
        assert detect(client, model="weedscan-b").status_code == 200
        assert states(client) == {"weedscan": "loaded", "weedscan-b": "loaded", "weedscan-c": "available"}
        assert detect(client, model="weedscan-c").status_code == 200  # b is the least recent
        assert states(client) == {"weedscan": "loaded", "weedscan-b": "available", "weedscan-c": "loaded"}
        assert detect(client, model="weedscan-b").json()["model"]["name"] == "weedscan-b"  # again
        assert states(client)["weedscan"] == "loaded"  # never the active one
    finally:
        client.__exit__(None, None, None)


def test_the_server_follows_the_folder_when_another_process_changes_it(folder: Path) -> None:
    client = open_client(folder)
    try:
        write_active(folder, "weedscan-c")  # as `weedscan models activate` or another worker does
        wait_for(lambda: detect(client).json()["model"]["name"] == "weedscan-c")
        assert listing(client)["active"] == "weedscan-c"
        models_folder(folder.parent, "weedscan-d")  # a model added meanwhile is offered
        wait_for(lambda: "weedscan-d" in states(client))
        assert detect(client, model="weedscan-d").status_code == 200
        (folder / "weedscan-d.onnx").unlink()
        wait_for(lambda: "weedscan-d" not in states(client))
    finally:
        client.__exit__(None, None, None)


def test_a_folder_that_cannot_be_written_refuses_activation_without_switching(folder: Path) -> None:
    client = open_client(folder)
    try:
        (folder / ACTIVE_FILE).mkdir()  # the rename over it fails
        answer = client.post("/v1/models/weedscan-b/activate")
        assert answer.status_code == 500 and answer.json()["error"]["code"] == "models_dir_not_writable"
        assert listing(client)["active"] == "weedscan"
    finally:
        client.__exit__(None, None, None)


def test_a_worker_started_again_after_a_swap_follows_the_swap_not_the_pin(folder: Path) -> None:
    pin = folder / "weedscan-b.onnx"
    write_active(folder, "weedscan-c")  # a swap while `weedscan serve --model ...b.onnx` ran
    restarted = open_client(folder, model=pin, serve_started=time.time() - 60)
    try:
        assert listing(restarted)["active"] == "weedscan-c"
    finally:
        restarted.__exit__(None, None, None)
    fresh = open_client(folder, model=pin, serve_started=time.time() + 60)  # no swap since start
    try:
        assert listing(fresh)["active"] == "weedscan-b"
    finally:
        fresh.__exit__(None, None, None)


def test_a_model_written_a_moment_ago_can_be_activated_at_once(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A fine-tuning job's candidate lands in the folder; Promote follows at once, before the
    server's watcher has looked at the folder again."""
    monkeypatch.setattr("serving.api.service.WATCH_S", 3600)
    folder = models_folder(tmp_path)
    with TestClient(create_app(Settings(models_dir=folder, threads=1)), raise_server_exceptions=False) as client:
        wait_ready(client.get)
        add_copy(folder, "fresh")
        answer = client.post("/v1/models/fresh/activate")
        assert answer.status_code == 200, answer.text
        assert answer.json()["active"] == "fresh"


def test_a_reader_of_the_folder_never_undoes_a_switch_made_while_it_read(folder: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A request following the folder reads its choice while the loader thread switches to
    another model: what it read before the switch must not win after it."""
    registry = ModelRegistry(folder, lambda path: Detector(path, threads=1, engine="onnxruntime"),
                             max_loaded=3)
    registry.start()
    registry.load("weedscan-b")
    registry.activate("weedscan-b")
    switcher = threading.Thread(target=registry.activate, args=("weedscan",))
    read_choice = registry_module.read_active

    def read_then_let_the_loader_switch(models_dir: Path) -> str | None:
        chosen = read_choice(models_dir)
        if threading.current_thread() is threading.main_thread() and not switcher.is_alive():
            switcher.start()  # the swap lands between this read and what the reader does with it
            switcher.join(timeout=1)
        return chosen

    monkeypatch.setattr(registry_module, "read_active", read_then_let_the_loader_switch)
    registry.follow_loaded()
    switcher.join(timeout=30)
    assert not switcher.is_alive()
    assert read_active(folder) == "weedscan"
    assert registry.active == "weedscan"


def test_a_card_written_after_its_model_is_read_when_it_arrives(folder: Path) -> None:
    """A plain copy writes the model, then its card: a look at the folder in between finds no
    card; once the card is there, the model is offered."""
    (folder / "late.onnx").write_bytes((folder / "weedscan.onnx").read_bytes())
    registry = ModelRegistry(folder, lambda path: Detector(path, threads=1, engine="onnxruntime"),
                             max_loaded=2)
    registry.start()
    early = registry.slot("late")
    assert early is not None and "card" in (early.error or ""), early
    card = json.loads((folder / "weedscan.json").read_text(encoding="utf-8"))
    (folder / "late.json").write_text(json.dumps({**card, "name": "late"}), encoding="utf-8")
    registry.scan()
    assert registry.usable("late").error is None
    assert registry.load("late").model_card.name == "late"
