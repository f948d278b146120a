"""POST /v1/detect answers where the photo was taken (its EXIF GPS block, as `weedscan batch`
records it), so the page shows and maps it without parsing EXIF itself; no `gps` without a fix."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from serving.answer import DetectAnswer
from tests import images


def photo_with_gps(lat: float, lon: float, fmt: str = "JPEG") -> bytes:
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)

    def dms(value: float) -> tuple[float, float, float]:
        degrees = int(value)
        minutes = int((value - degrees) * 60)
        return (float(degrees), float(minutes), round(((value - degrees) * 60 - minutes) * 60, 4))

    gps.update({1: "N" if lat >= 0 else "S", 2: dms(abs(lat)), 3: "E" if lon >= 0 else "W", 4: dms(abs(lon))})
    out = io.BytesIO()
    Image.fromarray(images.field_like(320, 240)[..., ::-1]).save(out, fmt, exif=exif.tobytes())
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_detect_answers_the_photos_gps_fix(client: TestClient, fmt: str) -> None:
    data = photo_with_gps(-33.8651432, 151.2099123, fmt)
    response = client.post("/v1/detect", files={"image": (f"p.{fmt.lower()}", data, f"image/{fmt.lower()}")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["gps"] == {"lat": pytest.approx(-33.8651432, abs=1e-6), "lon": pytest.approx(151.2099123, abs=1e-6)}
    assert DetectAnswer.model_validate(body).gps is not None


def test_no_gps_field_without_a_fix(client: TestClient) -> None:
    response = client.post("/v1/detect", content=images.encode(images.field_like(320, 240)),
                           headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200, response.text
    assert "gps" not in response.json()
