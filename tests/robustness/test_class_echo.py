"""A 422 naming thousands of unknown classes does not echo them all."""

from __future__ import annotations

from tests import images

JPEG = images.encode(images.field_like(64, 48), ".jpg")


def test_unknown_classes_echo_is_capped(live) -> None:  # noqa: ANN001
    names = ",".join(f"c{i:04d}" for i in range(1500))
    r = live.http.post("/v1/detect", content=JPEG, params={"classes": names},
                       headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert "c0000" in message and "1495 more" in message
    assert len(message) < 600, len(message)
