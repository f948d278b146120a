"""The same contract through a real `weedscan serve` process on loopback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from tests import images
from tests.serving.conftest import LiveServer

JPEG = images.encode(images.field_like(640, 480), ".jpg")


def test_detect_raw_and_multipart_over_http(live_server: LiveServer) -> None:
    http = live_server.http
    raw = http.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg"},
                    params={"conf": 0.01, "lanes": 4})
    assert raw.status_code == 200
    body = raw.json()
    assert body["image"] == {"width": 640, "height": 480} and len(body["lanes"]) == 4
    multi = http.post("/v1/detect", files={"image": ("a.jpg", JPEG, "image/jpeg")},
                      params={"conf": 0.01, "lanes": 4})
    assert multi.json()["detections"] == body["detections"]


def test_errors_over_http(live_server: LiveServer) -> None:
    http = live_server.http
    cases = [
        (http.post("/v1/detect", content=b"", headers={"Content-Type": "image/jpeg"}), 400),
        (http.post("/v1/detect", content=JPEG, headers={"Content-Type": "text/plain"}), 415),
        (http.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg"},
                   params={"conf": 2}), 422),
        (http.post("/v1/detect", content=images.png_header_bomb(),
                   headers={"Content-Type": "image/png"}), 413),
        (http.post("/v1/detect", content=b"\0" * (21 * 1024 * 1024),
                   headers={"Content-Type": "image/jpeg"}), 413),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"]
    assert http.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg"}).status_code == 200
    assert "POST /v1/detect" not in live_server.log()  # no access log unless WEEDSCAN_ACCESS_LOG


def test_batch_annotate_models_metrics_over_http(live_server: LiveServer) -> None:
    http = live_server.http
    files = [("images", ("a.jpg", JPEG, "image/jpeg")), ("images", ("b.jpg", b"nope", "image/jpeg"))]
    results = http.post("/v1/detect/batch", files=files).json()["results"]
    assert "detections" in results[0] and results[1]["error"]["code"] == "undecodable_image"
    annotated = http.post("/v1/annotate", content=JPEG, headers={"Content-Type": "image/jpeg"})
    assert annotated.status_code == 200 and annotated.content[:2] == b"\xff\xd8"
    assert http.get("/v1/models").json()["models"][0]["name"]
    assert "weedscan_requests_total" in http.get("/metrics").text
    assert http.get("/docs").status_code == 200 and http.get("/").status_code == 200


def test_serve_refuses_a_model_whose_card_does_not_match(shipped_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "tampered.onnx"
    shutil.copyfile(shipped_model, model)
    card = json.loads(shipped_model.with_suffix(".json").read_text(encoding="utf-8"))
    card["sha256"] = "0" * 64
    model.with_suffix(".json").write_text(json.dumps(card), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "training.cli", "serve", "--model", str(model),
                           "--port", "1"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "sha256" in done.stderr and "Traceback" not in done.stderr


def test_server_survives_a_client_that_hangs_up(live_server: LiveServer) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", live_server.port)) as raw:
        raw.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                    b"Content-Length: 100000\r\n\r\n" + JPEG[:1000])
    response = httpx.post(f"{live_server.url}/v1/detect", content=JPEG,
                          headers={"Content-Type": "image/jpeg"}, timeout=30)
    assert response.status_code == 200


def test_a_keep_alive_connection_outlives_a_pause(live_server: LiveServer) -> None:
    """A robot pausing at the headland keeps its connection: uvicorn's own default would close it
    after 5 s idle (WEEDSCAN_KEEP_ALIVE_S, 75 s by default)."""
    import http.client
    import time

    connection = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=30)
    local_ports = []
    try:
        for pause_s in (0.0, 6.0):
            time.sleep(pause_s)
            connection.request("POST", "/v1/detect", body=JPEG, headers={"Content-Type": "image/jpeg"})
            response = connection.getresponse()
            assert response.status == 200 and response.read()
            local_ports.append(connection.sock.getsockname()[1])
    finally:
        connection.close()
    assert local_ports[0] == local_ports[1]  # one socket served both: no reconnect
