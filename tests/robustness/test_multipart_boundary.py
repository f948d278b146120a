"""A multipart boundary over 256 characters is a 400 malformed_body, not a 500."""

from __future__ import annotations

from tests.serving.conftest import LiveServer


def test_a_boundary_over_256_characters_is_a_malformed_body(live: LiveServer) -> None:
    boundary = "b" * 300
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\nxx\r\n--{boundary}--\r\n").encode()
    for path in ("/v1/detect", "/v1/detect/batch"):
        r = live.http.post(path, content=body,
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "malformed_body"
