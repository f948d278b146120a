"""`image/jpg` and `application/octet-stream` bodies are accepted when their bytes are a supported
image (the signature is sniffed); 415 only when they are not. In process and over HTTP."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.api.bodies import sniff_media_type
from tests import images

FRAME = images.field_like(320, 240)
IMAGES = {media: images.encode(FRAME, ext) for media, ext in (
    ("image/jpeg", ".jpg"), ("image/png", ".png"), ("image/webp", ".webp"),
    ("image/bmp", ".bmp"), ("image/tiff", ".tif"))}


@pytest.mark.parametrize("media", sorted(IMAGES))
def test_sniffs_every_supported_signature(media: str) -> None:
    assert sniff_media_type(IMAGES[media]) == media
    assert sniff_media_type(b"MM\x00*\x00\x00\x00\x08") == "image/tiff"  # big-endian TIFF


@pytest.mark.parametrize("data", [b"GIF89a....", b"just some text", b"RIFF\0\0\0\0WAVE", b"\xff\xd8"])
def test_other_bytes_have_no_supported_signature(data: bytes) -> None:
    assert sniff_media_type(data) is None


def check_sniffed_bodies(http: TestClient | httpx.Client) -> None:
    for declared in ("application/octet-stream", "image/jpg"):
        for media, data in IMAGES.items():
            response = http.post("/v1/detect", content=data, headers={"Content-Type": declared})
            assert response.status_code == 200, (declared, media, response.text)
            assert response.json()["image"] == {"width": 320, "height": 240}
        annotated = http.post("/v1/annotate", content=IMAGES["image/png"],
                              headers={"Content-Type": declared})
        assert annotated.status_code == 200 and annotated.content[:2] == b"\xff\xd8"
        for data in (images.gif(), b"just some text"):
            refused = http.post("/v1/detect", content=data, headers={"Content-Type": declared})
            assert refused.status_code == 415, refused.text
            assert refused.json()["error"]["code"] == "unsupported_media_type"
        empty = http.post("/v1/detect", content=b"", headers={"Content-Type": declared})
        assert empty.status_code == 400 and empty.json()["error"]["code"] == "undecodable_image"
        truncated = http.post("/v1/detect", content=IMAGES["image/jpeg"][:200],
                              headers={"Content-Type": declared})
        assert truncated.status_code == 400  # a JPEG, but broken: undecodable, not unsupported
    assert http.post("/v1/detect", content=IMAGES["image/jpeg"],
                     headers={"Content-Type": "text/plain"}).status_code == 415


def test_sniffed_images_are_accepted_whatever_type_they_declare(http: TestClient | httpx.Client) -> None:
    check_sniffed_bodies(http)


def test_openapi_lists_the_sniffed_types(client: TestClient) -> None:
    body = client.get("/openapi.json").json()["paths"]["/v1/detect"]["post"]["requestBody"]
    assert "application/octet-stream" in body["content"]
