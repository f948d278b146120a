"""The bad-input corpus, the one list of bad (and odd) detect requests: every item gets its
documented status and error code, and the server answers a good request right after it, both in
process and through a real `weedscan serve`; each transport sends the corpus once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from serving.api.schemas import DetectAnswer
from tests import images

JPEG = images.encode(images.field_like(640, 480), ".jpg")
PNG = images.encode(images.field_like(640, 480), ".png")
THIRTY_MB = 30 * 1024 * 1024


@dataclass(frozen=True)
class Item:
    """One bad (or odd) request and what the contract says it gets."""

    status: int
    code: str | None = None               # error code; None for a 200
    raw: bytes | None = None              # raw body ...
    media: str = "image/jpeg"             # ... with this Content-Type
    files: Callable[[], dict] | None = None  # or a multipart body
    params: dict = field(default_factory=dict)
    size: tuple[int, int] | None = None   # expected image size of a 200


def _multipart(name: str, filename: str, data: bytes, media: str) -> Callable[[], dict]:
    return lambda: {name: (filename, data, media)}


CORPUS: dict[str, Item] = {
    "empty-body": Item(400, "undecodable_image", raw=b""),
    "empty-multipart-image": Item(400, "undecodable_image", files=_multipart("image", "e.jpg", b"", "image/jpeg")),
    "truncated-jpeg": Item(400, "undecodable_image", raw=JPEG[: len(JPEG) // 2]),
    "truncated-png": Item(400, "undecodable_image", raw=PNG[: len(PNG) // 2], media="image/png"),
    "text-as-jpeg": Item(400, "undecodable_image", raw=b"just some text"),
    "text-named-jpg": Item(400, "undecodable_image", files=_multipart(
        "image", "broken.jpg", b"this is a text file, not a picture\n" * 20, "image/jpeg")),
    "one-pixel-png": Item(200, raw=images.one_pixel(".png"), media="image/png", size=(1, 1)),
    "one-pixel-jpeg": Item(200, raw=images.one_pixel(".jpg"), size=(1, 1)),
    "header-20000x20000": Item(413, "too_many_pixels", raw=images.png_header_bomb(20000, 20000),
                               media="image/png"),
    "30mb-raw": Item(413, "payload_too_large", raw=b"\xff\xd8\xff\xe0" + b"\0" * THIRTY_MB),
    "30mb-multipart": Item(413, "payload_too_large", files=_multipart(
        "image", "big.jpg", b"\xff\xd8\xff\xe0" + b"\0" * THIRTY_MB, "image/jpeg")),
    "png-16bit": Item(200, raw=images.png16(), media="image/png", size=(320, 240)),
    "png-gray": Item(200, raw=images.gray_png(), media="image/png", size=(320, 240)),
    "png-rgba": Item(200, raw=images.rgba_png(), media="image/png", size=(320, 240)),
    "jpeg-cmyk": Item(200, raw=images.cmyk_jpeg(), size=(320, 240)),
    "tiff-multipage": Item(200, raw=images.multipage_tiff_sizes(), media="image/tiff", size=(320, 240)),
    "tiff-multipage-multipart": Item(200, files=_multipart(
        "image", "pages.tif", images.multipage_tiff_sizes(), "image/tiff"), size=(320, 240)),
    "gif-as-jpeg": Item(415, "unsupported_media_type", raw=images.gif()),
    "text-as-octet-stream": Item(415, "unsupported_media_type", raw=b"just some text",
                                 media="application/octet-stream"),
    "content-type-text": Item(415, "unsupported_media_type", raw=JPEG, media="text/plain"),
    "content-type-json": Item(415, "unsupported_media_type", raw=JPEG, media="application/json"),
    "content-type-missing": Item(415, "unsupported_media_type", raw=JPEG, media=""),
    "multipart-without-image": Item(422, "missing_field", files=_multipart("picture", "a.jpg", JPEG, "image/jpeg")),
    "conf-2": Item(422, "invalid_parameter", raw=JPEG, params={"conf": 2}),
    "iou-negative": Item(422, "invalid_parameter", raw=JPEG, params={"iou": -0.1}),
    "classes-cat": Item(422, "invalid_parameter", raw=JPEG, params={"classes": "cat"}),
    "lanes-0": Item(422, "invalid_parameter", raw=JPEG, params={"lanes": 0}),
    "lanes-65": Item(422, "invalid_parameter", raw=JPEG, params={"lanes": 65}),
    "max_det-0": Item(422, "invalid_parameter", raw=JPEG, params={"max_det": 0}),
    "tile-sometimes": Item(422, "invalid_parameter", raw=JPEG, params={"tile": "sometimes"}),
}
SENT: dict[str, set[str]] = {"in-process": set(), "live-server": set()}  # items each transport sent


@pytest.fixture(scope="module", params=["in-process", "live-server"])
def http(request: pytest.FixtureRequest):  # noqa: ANN201 - a TestClient or an httpx.Client
    """The same tests through FastAPI's in-process client and through a real server on loopback."""
    client = request.getfixturevalue("inproc") if request.param == "in-process" \
        else request.getfixturevalue("live").http
    client.transport_name = request.param  # which SENT set its items go to
    return client


def send(http, name: str):  # noqa: ANN001, ANN201
    item = CORPUS[name]
    SENT[http.transport_name].add(name)
    if item.files is not None:
        return http.post("/v1/detect", files=item.files(), params=item.params)
    headers = {"Content-Type": item.media} if item.media else {}
    return http.post("/v1/detect", content=item.raw, headers=headers, params=item.params)


def good_request_works(http) -> None:  # noqa: ANN001
    response = http.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200, response.text
    assert response.json()["image"] == {"width": 640, "height": 480}


@pytest.mark.parametrize("name", list(CORPUS))
def test_bad_input_gets_its_status_and_code_and_the_next_request_works(http, name: str) -> None:  # noqa: ANN001
    item = CORPUS[name]
    response = send(http, name)
    assert response.status_code == item.status, f"{name}: {response.status_code} {response.text[:300]}"
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if item.status == 200:
        answer = DetectAnswer.model_validate(body)  # the documented shape
        assert (answer.image.width, answer.image.height) == item.size
        for found in answer.detections:  # whatever it finds lies on the image, above the threshold
            box = found.box
            assert 0 <= box.x1 <= box.x2 <= item.size[0] and 0 <= box.y1 <= box.y2 <= item.size[1]
            assert 0 < found.confidence <= 1
        assert sum(answer.counts.values()) == len(answer.detections)
    else:
        assert set(body) == {"error"}
        assert body["error"]["code"] == item.code, body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    good_request_works(http)


def test_the_server_is_healthy_after_the_whole_corpus(http) -> None:  # noqa: ANN001
    for name in CORPUS.keys() - SENT[http.transport_name]:  # those the tests above did not send
        send(http, name)
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ready"}
    assert "weedscan_inflight_requests 0.0" in http.get("/metrics").text
    good_request_works(http)
