"""Query parameters: unknown ones are refused by name, repeated `classes` combine (in process and
over HTTP); routes get the service and the query through dependencies."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from tests import images

JPEG = images.encode(images.field_like(640, 480), ".jpg")
RAW = {"Content-Type": "image/jpeg"}
ROUTES = Path(__file__).resolve().parents[2] / "serving" / "api" / "routes"


def check_unknown_parameters(http: TestClient | httpx.Client) -> None:
    for path, extra in (("/v1/detect", {}), ("/v1/annotate", {"format": "png"})):
        response = http.post(path, content=JPEG, headers=RAW,
                             params={"confidence": 0.9, "conf": 0.5, **extra})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_parameter"
        assert error["message"] == "confidence: unknown parameter (see /docs)"
    batch = http.post("/v1/detect/batch", files=[("images", ("a.jpg", JPEG, "image/jpeg"))],
                      params={"lane": 2})
    assert batch.status_code == 422 and batch.json()["error"]["message"].startswith("lane:")
    assert http.post("/v1/detect", content=JPEG, headers=RAW, params={"format": "png"}).status_code == 422
    assert http.post("/v1/annotate", content=JPEG, headers=RAW, params={"format": "png"}).status_code == 200


def class_names(http: TestClient | httpx.Client, params: Any) -> set[str]:
    response = http.post("/v1/detect", content=JPEG, headers=RAW, params=params)
    assert response.status_code == 200, response.text
    return {d["class_name"] for d in response.json()["detections"]}


def check_repeated_classes(http: TestClient | httpx.Client) -> None:
    low = [("conf", "0.001"), ("max_det", "1000")]
    every = class_names(http, low)
    assert every == {"crop", "weed"}  # the synthetic field gives both at this threshold
    assert class_names(http, [*low, ("classes", "weed")]) == {"weed"}
    assert class_names(http, [*low, ("classes", "weed"), ("classes", "crop")]) == every
    assert class_names(http, [*low, ("classes", "weed,crop")]) == every
    assert class_names(http, [*low, ("classes", "crop"), ("classes", "weed,crop")]) == every
    for bad in ([("classes", "weed"), ("classes", "cat")], [("classes", " , ")]):
        response = http.post("/v1/detect", content=JPEG, headers=RAW, params=bad)
        assert response.status_code == 422 and response.json()["error"]["message"].startswith("classes:")


def test_unknown_parameters_are_refused_by_name(http: TestClient | httpx.Client) -> None:
    check_unknown_parameters(http)


def test_repeated_classes_combine(http: TestClient | httpx.Client) -> None:
    check_repeated_classes(http)


def test_openapi_lists_the_query_model(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    params = {p["name"]: p for p in spec["paths"]["/v1/detect"]["post"]["parameters"]}
    options = {"model", "conf", "iou", "classes", "max_det", "tile", "lanes", "mode", "veg_index",
               "veg_threshold", "min_area"}
    # detect and batch: also the plant mask and the frame tags (the query's and the header)
    assert set(params) == options | {"vegetation_mask", "frame_id", "X-Request-ID"}
    assert params["X-Request-ID"]["in"] == "header"
    assert params["classes"]["schema"]["anyOf"][0]["type"] == "array"
    batch = {p["name"] for p in spec["paths"]["/v1/detect/batch"]["post"]["parameters"]}
    assert batch == set(params)
    annotate = {p["name"] for p in spec["paths"]["/v1/annotate"]["post"]["parameters"]}
    assert annotate == options | {"format"}


def test_routes_take_dependencies_not_app_state() -> None:
    for module in ROUTES.glob("*.py"):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        state = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "state"
                 and ((isinstance(n.value, ast.Attribute) and n.value.attr == "app")
                      or (isinstance(n.value, ast.Name) and n.value.id in {"app", "request"}))]
        assert not state, f"{module.name} reads app.state: take a dependency (serving/api/deps.py)"
        assert '"parameters"' not in module.read_text(encoding="utf-8"), f"{module.name} hand-builds OpenAPI parameters"
