"""Field datasets over HTTP, in process: save, list, relabel, delete, export; and every bad input
a clear 4xx (or 503/507 for the data folder) that writes nothing."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from tests import images
from tests.serving.conftest import make_client, wait_ready

PHOTO = images.encode(images.field_like(320, 240, seed=1), ".jpg")
OTHER = images.encode(images.field_like(320, 240, seed=2), ".png")
WEED = {"class_name": "weed", "box": {"x1": 10, "y1": 20, "x2": 110, "y2": 120}}
CROP = {"class_name": "crop", "box": {"x1": 200, "y1": 100, "x2": 300, "y2": 230}}


def assert_error(response, status: int, code: str) -> None:  # noqa: ANN001
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"], body


def save(client: TestClient, name: str, photo: bytes = PHOTO, labels: object = (WEED, CROP),
         filename: str = "field.jpg", **data: str):  # noqa: ANN201
    form = {"labels": labels if isinstance(labels, str) else json.dumps(list(labels)), **data}
    return client.post(f"/v1/datasets/{name}/images", files={"image": (filename, photo, "image/jpeg")},
                       data=form)


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fields") / "data"


@pytest.fixture(scope="module")
def client(shipped_model: Path, data_dir: Path) -> Iterator[TestClient]:
    with make_client(shipped_model, data_dir=data_dir) as c:
        wait_ready(c.get)  # some tests also detect
        yield c


def create(client: TestClient, name: str, crop: str = "carrot", **extra: str):  # noqa: ANN201
    return client.post("/v1/datasets", json={"name": name, "crop": crop, **extra})


def test_nothing_is_written_until_a_user_saves(shipped_model: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with make_client(shipped_model, data_dir=data_dir) as c:
        wait_ready(c.get)
        assert c.get("/v1/datasets").json() == {"datasets": []}
        assert c.post("/v1/detect", content=PHOTO, headers={"Content-Type": "image/jpeg"}).status_code == 200
        assert c.post("/v1/detect/batch", files={"images": ("a.jpg", PHOTO, "image/jpeg")}).status_code == 200
        assert c.post("/v1/annotate", content=PHOTO, headers={"Content-Type": "image/jpeg"}).status_code == 200
        assert_error(c.get("/v1/datasets/carrots/images"), 404, "dataset_not_found")
        assert not data_dir.exists()
        assert create(c, "carrots").status_code == 201
        assert (data_dir / "catalogue.sqlite").is_file()


def test_save_list_read_relabel_delete(client: TestClient, data_dir: Path) -> None:
    made = create(client, "roundtrip", crop="sugar beet")
    assert made.status_code == 201, made.text
    assert made.json() | {"created": None, "updated": None} == {
        "name": "roundtrip", "crop": "sugar beet", "licence": "private", "images": 0,
        "counts": {"crop": 0, "weed": 0}, "splits": {}, "bytes": 0, "created": None, "updated": None}
    saved = save(client, "roundtrip")
    assert saved.status_code == 201, saved.text
    body = saved.json()
    assert body["created"] is True
    image = body["image"]
    assert (image["width"], image["height"], image["split"]) == (320, 240, "train")
    assert image["counts"] == {"crop": 1, "weed": 1} and image["filename"] == "field.jpg"
    assert image["bytes"] == len(PHOTO) and image["id"] == image["sha256"][:16]
    folder = data_dir / "roundtrip"
    assert (folder / image["file"]).read_bytes() == PHOTO  # stored as sent
    lines = (folder / "labels" / "train" / f"{image['id']}.txt").read_text(encoding="utf-8").splitlines()
    assert lines == ["1 0.187500 0.291667 0.312500 0.416667", "0 0.781250 0.687500 0.312500 0.541667"]

    listed = client.get("/v1/datasets/roundtrip/images").json()
    assert [i["id"] for i in listed["images"]] == [image["id"]]
    got = client.get(f"/v1/datasets/roundtrip/images/{image['id']}").json()
    assert got["labels"] == [WEED | {"box": {k: float(v) for k, v in WEED["box"].items()}},
                             CROP | {"box": {k: float(v) for k, v in CROP["box"].items()}}]
    raw = client.get(f"/v1/datasets/roundtrip/images/{image['id']}", params={"raw": 1})
    assert raw.status_code == 200 and raw.content == PHOTO
    assert raw.headers["content-type"] == "image/jpeg"

    relabelled = client.put(f"/v1/datasets/roundtrip/images/{image['id']}",
                            json={"labels": [WEED, WEED | {"box": {"x1": 0, "y1": 0, "x2": 5, "y2": 5}}]})
    assert relabelled.status_code == 200, relabelled.text
    assert relabelled.json()["image"]["counts"] == {"crop": 0, "weed": 2}
    info = client.get("/v1/datasets/roundtrip").json()
    assert (info["images"], info["counts"], info["splits"]) == (1, {"crop": 0, "weed": 2}, {"train": 1})
    card = yaml.safe_load((folder / "card.yaml").read_text(encoding="utf-8"))
    assert card["counts"] == {"crop": 0, "weed": 2} and card["crop"] == "sugar beet"
    assert card["licence"] == "private" and card["images"] == 1
    data_yaml = yaml.safe_load((folder / "data.yaml").read_text(encoding="utf-8"))
    assert data_yaml == {"train": "images/train", "nc": 2, "names": ["crop", "weed"]}

    assert client.delete(f"/v1/datasets/roundtrip/images/{image['id']}").status_code == 204
    assert client.get("/v1/datasets/roundtrip/images").json()["images"] == []
    assert files_under(folder / "images") == ["train"] and files_under(folder / "labels") == ["train"]
    assert_error(client.get(f"/v1/datasets/roundtrip/images/{image['id']}"), 404, "image_not_found")
    assert client.delete("/v1/datasets/roundtrip").status_code == 204
    assert not folder.exists()
    assert_error(client.get("/v1/datasets/roundtrip"), 404, "dataset_not_found")


def test_a_photo_saved_twice_is_one_image_with_the_new_labels(client: TestClient, data_dir: Path) -> None:
    assert create(client, "twice").status_code == 201
    first = save(client, "twice", labels=[WEED])
    second = save(client, "twice", labels=[CROP], filename="again.jpg")
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["created"] is False
    assert first.json()["image"]["id"] == second.json()["image"]["id"]
    listed = client.get("/v1/datasets/twice/images").json()["images"]
    assert len(listed) == 1 and listed[0]["counts"] == {"crop": 1, "weed": 0}
    assert len(list((data_dir / "twice" / "images" / "train").iterdir())) == 1
    # Saved again with split=val: moved, not copied; data.yaml now names the val split.
    moved = save(client, "twice", labels=[CROP], split="val")
    assert moved.status_code == 200 and moved.json()["image"]["split"] == "val"
    assert files_under(data_dir / "twice" / "images") == ["train", "val", f"val/{listed[0]['id']}.jpg"]
    assert yaml.safe_load((data_dir / "twice" / "data.yaml").read_text(encoding="utf-8"))["val"] == "images/val"
    info = client.get("/v1/datasets/twice").json()
    assert info["images"] == 1 and info["splits"] == {"val": 1}


def test_exif_orientation_boxes_are_upright_pixels_and_the_photo_is_kept_as_sent(client: TestClient) -> None:
    photo = images.jpeg_with_orientation(images.field_like(320, 240, seed=4), 6)  # stored 240x320
    assert create(client, "exif").status_code == 201
    upright = {"class_name": "weed", "box": {"x1": 250, "y1": 150, "x2": 320, "y2": 240}}
    saved = save(client, "exif", photo=photo, labels=[upright])
    assert saved.status_code == 201, saved.text
    image = saved.json()["image"]
    assert (image["width"], image["height"]) == (320, 240)  # as the detect answer gives it
    detect = client.post("/v1/detect", content=photo, headers={"Content-Type": "image/jpeg"})
    assert detect.status_code == 200, detect.text
    assert detect.json()["image"] == {"width": 320, "height": 240}
    assert client.get(f"/v1/datasets/exif/images/{image['id']}?raw=1").content == photo
    # A box that fits only the stored (sideways) frame is outside the upright one.
    assert_error(save(client, "exif", photo=photo,
                      labels=[{"class_name": "weed", "box": {"x1": 0, "y1": 0, "x2": 200, "y2": 300}}]),
                 422, "invalid_labels")


@pytest.mark.parametrize("name", ["..", "../evil", "a/../../b", "Evil", "-x", "x" * 65, "a b", "a.b", ""])
def test_bad_dataset_names_are_refused_and_nothing_lands_outside(client: TestClient, data_dir: Path,
                                                                 name: str) -> None:
    outside = files_under(data_dir.parent)
    response = create(client, name)
    assert_error(response, 422, "invalid_parameter")
    for path in (f"/v1/datasets/{name}/images", f"/v1/datasets/{name.replace('.', '%2e')}/images"):
        response = save(client, path.removeprefix("/v1/datasets/").removesuffix("/images"))
        assert response.status_code in (404, 405, 422), (path, response.status_code, response.text)
        assert response.json()["error"]["code"]
    assert files_under(data_dir.parent) == outside


def test_encoded_path_escapes_are_refused(client: TestClient, data_dir: Path) -> None:
    before = files_under(data_dir.parent)
    for path in ("/v1/datasets/%2e%2e/images", "/v1/datasets/..%2fx/images", "/v1/datasets/%2e%2e%2f%2e%2e/images"):
        response = client.post(path, files={"image": ("a.jpg", PHOTO, "image/jpeg")},
                               data={"labels": "[]"})
        assert response.status_code in (404, 422), (path, response.text)
    assert client.get("/v1/datasets/%2e%2e/export").status_code in (404, 422)
    assert files_under(data_dir.parent) == before


def test_a_dataset_name_is_taken_once(client: TestClient) -> None:
    assert create(client, "once").status_code == 201
    assert_error(create(client, "once"), 409, "dataset_exists")
    assert_error(client.post("/v1/datasets", json={"name": "x1", "crop": "carrot", "extra": 1}),
                 422, "invalid_parameter")
    assert_error(client.post("/v1/datasets", content=b"{not json", headers={"Content-Type": "application/json"}),
                 422, "invalid_parameter")
    assert_error(client.post("/v1/datasets", content=b"name=x", headers={"Content-Type": "text/plain"}),
                 415, "unsupported_media_type")


def test_unknown_class_is_422_and_nothing_is_stored(client: TestClient, data_dir: Path) -> None:
    assert create(client, "classes").status_code == 201
    before = files_under(data_dir / "classes")
    bad = {"class_name": "thistle", "box": WEED["box"]}
    response = save(client, "classes", labels=[WEED, bad])
    assert_error(response, 422, "invalid_labels")
    assert "thistle" in response.json()["error"]["message"]
    assert_error(save(client, "classes", labels="not json"), 422, "invalid_labels")
    assert_error(save(client, "classes", labels='{"class_name": "weed"}'), 422, "invalid_labels")
    assert_error(save(client, "classes", labels=[{"class_name": "weed"}]), 422, "invalid_labels")
    assert files_under(data_dir / "classes") == before
    image_id = save(client, "classes", labels=[WEED]).json()["image"]["id"]
    response = client.put(f"/v1/datasets/classes/images/{image_id}", json={"labels": [bad]})
    assert_error(response, 422, "invalid_parameter")
    assert "thistle" in response.json()["error"]["message"]
    assert client.get(f"/v1/datasets/classes/images/{image_id}").json()["labels"][0]["class_name"] == "weed"


def test_detect_answer_boxes_can_be_saved_as_they_are(client: TestClient) -> None:
    assert create(client, "fromdetect").status_code == 201
    detection = {"class_id": 1, "class_name": "weed", "confidence": 0.8, "box": WEED["box"]}
    response = save(client, "fromdetect", labels=[detection])
    assert response.status_code == 201, response.text
    assert response.json()["image"]["counts"] == {"crop": 0, "weed": 1}


@pytest.mark.parametrize(("box", "status"), [
    ({"x1": -0.5, "y1": 0, "x2": 320.8, "y2": 240.4}, 201),  # within 1 px: clipped
    ({"x1": -3, "y1": 0, "x2": 50, "y2": 50}, 422),
    ({"x1": 10, "y1": 10, "x2": 400, "y2": 50}, 422),
    ({"x1": 330, "y1": 10, "x2": 400, "y2": 50}, 422),
    ({"x1": 50, "y1": 50, "x2": 50, "y2": 80}, 422),  # no area
    ({"x1": 60, "y1": 50, "x2": 40, "y2": 80}, 422),  # reversed
])
def test_boxes_outside_the_image(client: TestClient, box: dict[str, float], status: int) -> None:
    create(client, "edges")
    response = save(client, "edges", photo=OTHER, labels=[{"class_name": "crop", "box": box}])
    assert response.status_code == status, response.text
    if status == 201:
        assert response.json()["labels"][0]["box"] == {"x1": 0.0, "y1": 0.0, "x2": 320.0, "y2": 240.0}
        image_id = response.json()["image"]["id"]
        assert client.delete(f"/v1/datasets/edges/images/{image_id}").status_code == 204
    else:
        assert response.json()["error"]["code"] == "invalid_labels"


def test_broken_or_missing_photo_is_refused_and_nothing_is_stored(client: TestClient, data_dir: Path) -> None:
    assert create(client, "broken").status_code == 201
    before = files_under(data_dir / "broken")
    assert_error(save(client, "broken", photo=PHOTO[:600]), 400, "undecodable_image")
    assert_error(save(client, "broken", photo=b"not an image at all"), 400, "undecodable_image")
    assert_error(save(client, "broken", photo=images.gif()), 415, "unsupported_media_type")
    response = client.post("/v1/datasets/broken/images", data={"labels": "[]"},
                           files={"other": ("x.txt", b"x", "text/plain")})
    assert_error(response, 422, "missing_field")
    response = client.post("/v1/datasets/broken/images", files={"image": ("a.jpg", PHOTO, "image/jpeg")})
    assert_error(response, 422, "missing_field")
    assert_error(client.post("/v1/datasets/broken/images", content=PHOTO,
                             headers={"Content-Type": "image/jpeg"}), 415, "unsupported_media_type")
    assert_error(save(client, "broken", split="holdout"), 422, "invalid_parameter")
    assert_error(save(client, "nosuchset"), 404, "dataset_not_found")
    assert files_under(data_dir / "broken") == before
    assert client.get("/v1/datasets/broken").json()["images"] == 0


def test_unknown_image_ids(client: TestClient) -> None:
    create(client, "ids")
    assert_error(client.get("/v1/datasets/ids/images/0123456789abcdef"), 404, "image_not_found")
    assert_error(client.get("/v1/datasets/ids/images/..catalogue.sqlite"), 422, "invalid_parameter")
    assert client.get("/v1/datasets/ids/images/..%2f..%2fcatalogue.sqlite").status_code == 404
    assert_error(client.put("/v1/datasets/ids/images/0123456789abcdef", json={"labels": []}),
                 404, "image_not_found")
    assert_error(client.delete("/v1/datasets/ids/images/0123456789abcdef"), 404, "image_not_found")


def test_export_is_a_zip_in_the_yolo_layout(client: TestClient, tmp_path: Path) -> None:
    assert create(client, "export").status_code == 201
    first = save(client, "export", labels=[WEED, CROP]).json()["image"]
    second = save(client, "export", photo=OTHER, labels=[], split="val").json()["image"]
    response = client.get("/v1/datasets/export/export")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert 'filename="export.zip"' in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert sorted(archive.namelist()) == sorted([
            "export/data.yaml", "export/card.yaml",
            f"export/images/train/{first['id']}.jpg", f"export/labels/train/{first['id']}.txt",
            f"export/images/val/{second['id']}.png", f"export/labels/val/{second['id']}.txt"])
        archive.extractall(tmp_path)
    assert (tmp_path / first["file"].replace("images/", "export/images/", 1)).read_bytes() == PHOTO
    data = yaml.safe_load((tmp_path / "export" / "data.yaml").read_text(encoding="utf-8"))
    assert data == {"train": "images/train", "val": "images/val", "nc": 2, "names": ["crop", "weed"]}
    assert (tmp_path / "export" / "labels" / "val" / f"{second['id']}.txt").read_text(encoding="utf-8") == ""
    assert_error(client.get("/v1/datasets/nosuchset/export"), 404, "dataset_not_found")


def test_full_quota_is_507_and_nothing_is_stored(shipped_model: Path, tmp_path: Path) -> None:
    quota_gb = (len(PHOTO) + len(OTHER) // 2) / 1024 ** 3  # room for PHOTO, not for OTHER too
    with make_client(shipped_model, data_dir=tmp_path / "data", max_data_gb=quota_gb) as c:
        assert create(c, "small").status_code == 201
        assert save(c, "small").status_code == 201
        before = files_under(tmp_path / "data")
        response = save(c, "small", photo=OTHER)
        assert_error(response, 507, "insufficient_storage")
        assert "WEEDSCAN_MAX_DATA_GB" in response.json()["error"]["message"]
        assert files_under(tmp_path / "data") == before
        assert save(c, "small", labels=[CROP]).status_code == 200  # relabelling needs no room


def test_unusable_data_folder_is_503_naming_it(shipped_model: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    with make_client(shipped_model, data_dir=blocker / "data") as c:
        assert c.get("/v1/datasets").json() == {"datasets": []}
        response = create(c, "field")
        assert_error(response, 503, "data_dir_unavailable")
        assert str(blocker / "data") in response.json()["error"]["message"]
        assert "Retry-After" not in response.headers


def test_api_key_is_needed_when_keys_are_configured(shipped_model: Path, tmp_path: Path) -> None:
    with make_client(shipped_model, data_dir=tmp_path / "data", api_keys=["field-key-1"]) as c:
        assert_error(c.get("/v1/datasets"), 401, "unauthorized")
        assert_error(create(c, "secured"), 401, "unauthorized")
        assert_error(save(c, "secured"), 401, "unauthorized")
        assert_error(c.get("/v1/datasets/secured/export"), 401, "unauthorized")
        assert not (tmp_path / "data").exists()
        key = {"X-API-Key": "field-key-1"}
        assert c.post("/v1/datasets", json={"name": "secured", "crop": "leek"}, headers=key).status_code == 201
        image_id = c.post("/v1/datasets/secured/images", headers=key, data={"labels": "[]"},
                          files={"image": ("a.jpg", PHOTO, "image/jpeg")}).json()["image"]["id"]
        assert_error(c.delete(f"/v1/datasets/secured/images/{image_id}"), 401, "unauthorized")
        assert_error(c.put(f"/v1/datasets/secured/images/{image_id}", json={"labels": []}), 401, "unauthorized")
        assert c.get("/v1/datasets", headers={"Authorization": "Bearer field-key-1"}).status_code == 200


def test_cross_site_writes_are_refused(client: TestClient, data_dir: Path) -> None:
    evil = {"Origin": "https://attacker.example"}
    assert_error(client.post("/v1/datasets", json={"name": "xsite", "crop": "carrot"}, headers=evil),
                 403, "cross_site_request")
    assert not (data_dir / "xsite").exists()
    assert create(client, "xsite").status_code == 201
    image_id = save(client, "xsite").json()["image"]["id"]
    for method in ("PUT", "DELETE"):
        response = client.request(method, f"/v1/datasets/xsite/images/{image_id}",
                                  headers={"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"},
                                  content=b'{"labels": []}')
        assert_error(response, 403, "cross_site_request")
    assert_error(client.delete("/v1/datasets/xsite", headers=evil), 403, "cross_site_request")
    assert client.get(f"/v1/datasets/xsite/images/{image_id}").json()["image"]["counts"] == {"crop": 1, "weed": 1}
    same = client.post("/v1/datasets", json={"name": "samesite", "crop": "carrot"},
                       headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 201, same.text


def test_bodies_are_bounded(shipped_model: Path, tmp_path: Path) -> None:
    with make_client(shipped_model, data_dir=tmp_path / "data", max_upload_mb=0.01) as c:
        assert create(c, "bounded").status_code == 201
        assert_error(save(c, "bounded", photo=OTHER), 413, "payload_too_large")  # > 10 KiB
        huge = json.dumps([WEED] * 20000)
        assert_error(c.put("/v1/datasets/bounded/images/0123456789abcdef", content=huge,
                           headers={"Content-Type": "application/json"}), 413, "payload_too_large")
