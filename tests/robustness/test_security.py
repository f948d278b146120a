"""Security properties (API keys: tests/serving/test_api_keys.py): uploads neither
written to disk nor logged; EXIF GPS not echoed; upload limits enforced before the body is read;
dependencies pinned to ranges that hold what is installed."""

from __future__ import annotations

import base64
import builtins
import json
import re
import socket
import time
from importlib import metadata
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests import images
from tests.robustness.conftest import LiveServer

REPO = Path(__file__).resolve().parents[2]
JPEG = images.encode(images.field_like(640, 480), ".jpg")


def detect_raw(http, data: bytes = JPEG, media: str = "image/jpeg", headers: dict | None = None):  # noqa: ANN001, ANN201
    return http.post("/v1/detect", content=data, headers={"Content-Type": media, **(headers or {})})


# --- uploads: not on disk, not in the log --------------------------------------------------------

def _write_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every open() for writing (Python-level) while the test runs."""
    opened: list[str] = []
    real_open = builtins.open

    def watching_open(file, mode="r", *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if any(flag in str(mode) for flag in "wax+"):
            opened.append(f"{file} ({mode})")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", watching_open)
    return opened


def test_batch_uploads_are_never_written_to_disk(inproc: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an upload was about to be written to a temporary file")

    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp", "mkdtemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    opened = _write_opens(monkeypatch)
    big = images.png_with_text("batch upload")  # > 1 MB: Starlette's own parser would spool it
    assert len(big) > 1024 * 1024
    files = [("images", ("a.png", big, "image/png")), ("images", ("b.png", big, "image/png")),
             ("images", ("c.jpg", JPEG, "image/jpeg"))]
    response = inproc.post("/v1/detect/batch", files=files)
    assert response.status_code == 200, response.text
    assert [r["image"]["width"] for r in response.json()["results"]] == [1200, 1200, 640]
    annotated = inproc.post("/v1/annotate", files={"image": ("a.png", big, "image/png")})
    assert annotated.status_code == 200
    assert opened == []


def test_live_server_writes_no_upload_to_disk_and_logs_no_image_data(live: LiveServer) -> None:
    marker = "WEEDSCAN-PRIVATE-MARKER-7f3a9c"
    jpeg = images.jpeg_with_comment(marker)
    png = images.png_with_text(marker)
    http = live.http
    before = len(live.log())
    assert http.post("/v1/detect", content=jpeg, headers={"Content-Type": "image/jpeg"}).status_code == 200
    assert http.post("/v1/detect", files={"image": ("field.png", png, "image/png")}).status_code == 200
    batch = http.post("/v1/detect/batch", files=[("images", ("a.png", png, "image/png")),
                                                 ("images", ("b.jpg", jpeg, "image/jpeg")),
                                                 ("images", ("c.jpg", jpeg[:500], "image/jpeg"))])
    assert batch.status_code == 200
    assert http.post("/v1/annotate", content=png, headers={"Content-Type": "image/png"}).status_code == 200
    assert http.post("/v1/detect", content=jpeg[:800], headers={"Content-Type": "image/jpeg"}).status_code == 400
    time.sleep(0.2)
    log = live.log()[before:]
    assert log.count("POST /v1/") >= 5, log  # the access log did record these requests
    # Nothing of the images: not the marker (raw, hex or base64), not their bytes, no long lines.
    fragments = [marker, marker.encode().hex()]
    for data in (jpeg, png, marker.encode()):
        for shift in range(3):
            encoded = base64.b64encode(data[shift:]).decode()
            fragments += [encoded[i:i + 24] for i in range(0, min(len(encoded), 4800), 480)]
    for fragment in fragments:
        assert fragment not in log, f"image data in the log: {fragment!r}"
    assert "\\x" not in log and "\ufffd" not in log
    assert max(len(line) for line in log.splitlines()) < 500
    # Nothing written to the server's TMPDIR.
    assert list(live.tmpdir.iterdir()) == []  # type: ignore[attr-defined]


# --- EXIF GPS -------------------------------------------------------------------------------------

def _keys(value: object) -> list[str]:
    if isinstance(value, dict):
        return [str(k) for k in value] + [k for v in value.values() for k in _keys(v)]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


def _without_gps(value: object) -> object:
    """The answer with its documented `gps` fix taken out (the page maps a photo by it)."""
    if isinstance(value, dict):
        return {k: _without_gps(v) for k, v in value.items() if k != "gps"}
    if isinstance(value, list):
        return [_without_gps(v) for v in value]
    return value


def test_exif_sends_back_only_the_gps_fix(inproc: TestClient) -> None:
    """The sender gets its photo's position as `gps` {lat, lon} and nothing else of the EXIF
    block: no camera, no altitude, no raw tags, in any other field."""
    lat, lon = 12.582441, 98.765432
    photo = images.jpeg_with_gps(lat, lon)
    for response in (inproc.post("/v1/detect", content=photo, headers={"Content-Type": "image/jpeg"},
                                 params={"lanes": 4, "conf": 0.01}),
                     inproc.post("/v1/detect", files={"image": ("drone.jpg", photo, "image/jpeg")}),
                     inproc.post("/v1/detect/batch", files={"images": ("drone.jpg", photo, "image/jpeg")})):
        assert response.status_code == 200, response.text
        body = json.loads(response.text)
        answers = body["results"] if "results" in body else [body]
        for answer in answers:
            if "gps" in answer:
                assert answer["gps"] == pytest.approx({"lat": lat, "lon": lon}, abs=1e-5)
        assert "gps" in answers[0] or "/batch" in str(response.url)
        rest = _without_gps(body)
        assert not [k for k in _keys(rest) if re.search(r"gps|lat|lon|exif|location|altitude", k, re.I)]
        text = json.dumps(rest)
        for number in ("12.58", "98.76", "12.0, 34.0", "56.78", "55.55", "WeedscanTestCam"):
            assert number not in text, f"{number} echoed: {text[:300]}"
    # The annotated image is re-encoded from pixels: no EXIF (and so no GPS) travels with it.
    import io

    from PIL import Image

    drawn = inproc.post("/v1/annotate", content=photo, headers={"Content-Type": "image/jpeg"})
    assert drawn.status_code == 200
    with Image.open(io.BytesIO(drawn.content)) as im:
        assert not im.getexif().get_ifd(0x8825)


# --- limits before the body ----------------------------------------------------------------------

@pytest.mark.parametrize(("path", "content_type", "declared"), [
    ("/v1/detect", "image/jpeg", 50_000_000),
    ("/v1/detect", "multipart/form-data; boundary=xyz", 50_000_000),
    ("/v1/annotate", "image/png", 50_000_000),
    ("/v1/detect/batch", "multipart/form-data; boundary=xyz", 500_000_000),
])
def test_oversized_upload_is_refused_before_the_body_arrives(
        live: LiveServer, path: str, content_type: str, declared: int) -> None:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {declared}\r\n\r\n").encode()
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as raw:
        raw.sendall(head + b"\xff\xd8\xff\xe0 only a few bytes")
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = raw.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pytest.fail(f"no answer within 10 s: the server waited for the body ({answer[:200]!r})")
    elapsed = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b'"payload_too_large"' in answer
    assert elapsed < 10
    assert live.http.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg"}).status_code == 200


# --- dependencies ---------------------------------------------------------------------------------

def _requirements() -> list[str]:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    found = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        found += extra
    return found


@pytest.mark.parametrize("line", _requirements())
def test_dependency_has_lower_and_upper_bounds_and_the_installed_version_fits(line: str) -> None:
    from packaging.requirements import Requirement

    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate():
        pytest.skip(f"{line}: not for this platform")
    lower = [s for s in req.specifier if s.operator in (">=", ">", "==", "~=", "===")]
    upper = [s for s in req.specifier if s.operator in ("<", "<=", "==", "~=", "===")]
    assert lower, f"{line}: no lower bound"
    assert upper, f"{line}: no upper bound"
    assert not req.specifier.contains("0", prereleases=True), f"{line}: admits any old release"
    try:
        installed = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{req.name} is not installed here (extra not installed)")
    assert req.specifier.contains(installed, prereleases=True), (
        f"{req.name} {installed} is installed but {line} excludes it")
