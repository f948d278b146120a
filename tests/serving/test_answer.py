"""One typed answer (serving/answer.py): the API, `to_dict` and OpenAPI agree, in process and over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi.testclient import TestClient

from serving.answer import BatchAnswer, DetectAnswer, wire_dict
from serving.detector import DetectOptions
from serving.imaging import decode_image
from tests import images

JPEG = images.encode(images.field_like(640, 480), ".jpg")
RAW = {"Content-Type": "image/jpeg"}


def without_timing(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer less what differs from request to request (timings, the receive time)."""
    return {k: v for k, v in answer.items() if k not in ("timing_ms", "received_at")}


def test_to_dict_is_the_wire_answer(client: TestClient) -> None:
    detector = client.app.state.service.detector
    result = detector.detect(decode_image(JPEG, 10**8), DetectOptions(conf=0.01))
    answer = result.to_dict(lanes=3)
    assert answer == wire_dict(DetectAnswer.model_validate(answer))
    assert list(answer) == ["model", "image", "detections", "counts", "weed_cover",
                            "weed_box_cover", "lanes", "timing_ms"]
    assert "lanes" not in result.to_dict() and all("area" not in d for d in answer["detections"])
    served = client.post("/v1/detect", content=JPEG, headers=RAW, params={"conf": 0.01, "lanes": 3})
    assert without_timing(served.json()) == without_timing(answer)  # what detect/batch CLIs print


def test_green_mode_answer_has_areas(client: TestClient) -> None:
    body = client.post("/v1/detect", content=JPEG, headers=RAW, params={"mode": "green"}).json()
    DetectAnswer.model_validate(body)
    assert body["detections"] and all(isinstance(d["area"], int) for d in body["detections"])


def check_openapi(spec: dict[str, Any]) -> None:
    def ok_schema(path: str) -> dict[str, Any]:
        return spec["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]

    assert ok_schema("/v1/detect") == {"$ref": "#/components/schemas/DetectAnswer"}
    assert ok_schema("/v1/detect/batch") == {"$ref": "#/components/schemas/BatchAnswer"}
    schemas = spec["components"]["schemas"]
    assert set(schemas["DetectAnswer"]["properties"]) == set(DetectAnswer.model_fields)
    assert {"index", "filename"} <= set(schemas["BatchItem"]["properties"])
    assert {"index", "filename", "error"} == set(schemas["BatchError"]["properties"])
    annotate = spec["paths"]["/v1/annotate"]["post"]["responses"]
    assert {"image/jpeg", "image/png"} <= set(annotate["200"]["content"])
    assert annotate["415"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorAnswer")


def check_batch(results: list[dict[str, Any]]) -> None:
    assert [(r["index"], r["filename"]) for r in results] == [(0, "a.jpg"), (1, "b.jpg"), (2, "a.jpg")]
    assert results[1]["error"]["code"] == "undecodable_image"
    assert {**without_timing(results[0]), "index": 2} == without_timing(results[2])
    BatchAnswer.model_validate({"results": results})


BATCH = [("images", ("a.jpg", JPEG, "image/jpeg")), ("images", ("b.jpg", b"nope", "image/jpeg")),
         ("images", ("a.jpg", JPEG, "image/jpeg"))]  # the same name twice: the index tells them apart


def test_openapi_documents_the_typed_answers(http: TestClient | httpx.Client) -> None:
    check_openapi(http.get("/openapi.json").json())


def test_batch_items_name_their_file(http: TestClient | httpx.Client) -> None:
    check_batch(http.post("/v1/detect/batch", files=BATCH).json()["results"])


def test_a_detect_answer_is_exactly_the_typed_model(http: TestClient | httpx.Client) -> None:
    body = http.post("/v1/detect", content=JPEG, headers=RAW, params={"lanes": 2}).json()
    assert wire_dict(DetectAnswer.model_validate(body)) == body
