"""Field datasets over real HTTP (a `weedscan serve` process): detect writes nothing, then
save, list, relabel and export round-trip; the Host check holds for the new routes."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from tests import images
from tests.serving.conftest import LiveServer

pytestmark = pytest.mark.slow

PHOTO = images.encode(images.field_like(400, 300, seed=7), ".jpg")
LABELS = [{"class_name": "weed", "box": {"x1": 12.5, "y1": 30, "x2": 140, "y2": 200}},
          {"class_name": "crop", "box": {"x1": 200, "y1": 50, "x2": 399, "y2": 299}}]


@pytest.fixture(scope="module")
def server(shipped_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    root = tmp_path_factory.mktemp("fields-live")
    (root / "tmp").mkdir()
    live = LiveServer(shipped_model, env={"WEEDSCAN_DATA_DIR": str(root / "data"),
                                          "TMPDIR": str(root / "tmp"), "WEEDSCAN_THREADS": "1"},
                      log_path=root / "server.log")
    yield live, root
    log = live.stop()
    assert "Traceback" not in log and "internal_error" not in log, log[-4000:]


def test_detect_writes_nothing_then_save_list_export_round_trip(server: tuple[LiveServer, Path],
                                                                 tmp_path: Path) -> None:
    live, root = server
    http = live.http
    assert http.post("/v1/detect", content=PHOTO, headers={"Content-Type": "image/jpeg"}).status_code == 200
    assert http.post("/v1/detect", files={"image": ("a.jpg", PHOTO, "image/jpeg")}).status_code == 200
    assert http.get("/v1/datasets").json() == {"datasets": []}
    assert not (root / "data").exists() and list((root / "tmp").iterdir()) == []

    made = http.post("/v1/datasets", json={"name": "live-field", "crop": "onion", "licence": "CC-BY-4.0"})
    assert made.status_code == 201, made.text
    saved = http.post("/v1/datasets/live-field/images", files={"image": ("IMG_1.jpg", PHOTO, "image/jpeg")},
                      data={"labels": json.dumps(LABELS)})
    assert saved.status_code == 201, saved.text
    image = saved.json()["image"]
    again = http.post("/v1/datasets/live-field/images", files={"image": ("IMG_1.jpg", PHOTO, "image/jpeg")},
                      data={"labels": json.dumps(LABELS[:1])})
    assert again.status_code == 200 and again.json()["image"]["id"] == image["id"]

    listed = http.get("/v1/datasets").json()["datasets"]
    assert [(d["name"], d["crop"], d["licence"], d["images"], d["counts"]) for d in listed] == [
        ("live-field", "onion", "CC-BY-4.0", 1, {"crop": 0, "weed": 1})]
    images_listed = http.get("/v1/datasets/live-field/images").json()["images"]
    assert [(i["id"], i["filename"], i["width"], i["height"]) for i in images_listed] == [
        (image["id"], "IMG_1.jpg", 400, 300)]
    assert http.get(f"/v1/datasets/live-field/images/{image['id']}", params={"raw": "1"}).content == PHOTO

    relabelled = http.put(f"/v1/datasets/live-field/images/{image['id']}", json={"labels": LABELS})
    assert relabelled.status_code == 200, relabelled.text

    exported = http.get("/v1/datasets/live-field/export")
    assert exported.status_code == 200 and exported.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
        archive.extractall(tmp_path)
    folder = tmp_path / "live-field"
    assert (folder / "images" / "train" / f"{image['id']}.jpg").read_bytes() == PHOTO
    lines = (folder / "labels" / "train" / f"{image['id']}.txt").read_text(encoding="utf-8").splitlines()
    assert [line.split()[0] for line in lines] == ["1", "0"]
    card = yaml.safe_load((folder / "card.yaml").read_text(encoding="utf-8"))
    assert (card["name"], card["crop"], card["images"], card["counts"]) == (
        "live-field", "onion", 1, {"crop": 1, "weed": 1})
    assert list((root / "tmp").iterdir()) == []  # the zip is streamed, no temporary file


def test_host_and_cross_site_checks_hold_for_dataset_routes(server: tuple[LiveServer, Path]) -> None:
    live, root = server
    refused = live.http.get("/v1/datasets", headers={"Host": "rebound.attacker.example"})
    assert refused.status_code == 421 and refused.json()["error"]["code"] == "misdirected_request"
    cross = live.http.post("/v1/datasets", json={"name": "xsite", "crop": "carrot"},
                           headers={"Origin": "http://attacker.example"})
    assert cross.status_code == 403 and cross.json()["error"]["code"] == "cross_site_request"
    assert not (root / "data" / "xsite").exists()


def test_two_worker_processes_share_one_catalogue(shipped_model: Path, tmp_path: Path) -> None:
    """Saves spread over two server processes, the same photos several times: each photo is one
    image, the card counts all of them, no temporary file is left."""
    data = tmp_path / "data"
    live = LiveServer(shipped_model, env={"WEEDSCAN_DATA_DIR": str(data), "WEEDSCAN_THREADS": "1"},
                      log_path=tmp_path / "server.log", args=["--workers", "2"])
    try:
        assert live.http.post("/v1/datasets", json={"name": "shared", "crop": "carrot"}).status_code == 201
        photos = [images.encode(images.field_like(160, 120, seed=s), ".jpg") for s in range(6)]
        small = [{"class_name": "weed", "box": {"x1": 5, "y1": 5, "x2": 50, "y2": 50}}]

        def save(i: int) -> int:
            with httpx.Client(base_url=live.url, timeout=60) as http:  # a connection of its own
                return http.post("/v1/datasets/shared/images", data={"labels": json.dumps(small)},
                                 files={"image": (f"{i}.jpg", photos[i % 6], "image/jpeg")}).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(save, range(24)))
        assert sorted(set(statuses)) in ([200, 201], [201]) and statuses.count(201) == 6, statuses
        info = live.http.get("/v1/datasets/shared").json()
        assert (info["images"], info["counts"]) == (6, {"crop": 0, "weed": 6})
        card = yaml.safe_load((data / "shared" / "card.yaml").read_text(encoding="utf-8"))
        assert (card["images"], card["counts"]) == (6, {"crop": 0, "weed": 6})
        assert len(list((data / "shared" / "images" / "train").iterdir())) == 6
        assert not [p for p in data.rglob("*") if p.name.endswith(".tmp")]
    finally:
        log = live.stop()
    assert "Traceback" not in log, log[-4000:]
