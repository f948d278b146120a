"""GET /v1/models answers which model is active and each model's typed card plus its state (and,
loaded, its providers), as docs/api.md says; in process and over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from serving.api.schemas import BrokenModel, ListedModel, ModelsAnswer
from serving.model_card import ModelCard

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def check_models(http: TestClient | httpx.Client, shipped_model: Path) -> None:
    body = http.get("/v1/models").json()
    ModelsAnswer.model_validate(body)
    assert list(body) == ["active", "models"] and body["active"] == "weedscan"
    served = dict(next(m for m in body["models"] if m["name"] == "weedscan"))
    providers, engine = served.pop("providers"), served.pop("engine")
    assert engine["engine"] in ("onnxruntime", "openvino") and engine["reason"]
    if engine["engine"] == "onnxruntime":
        assert providers and all(p.endswith("ExecutionProvider") for p in providers)
    assert (served.pop("state"), served.pop("active"), served.pop("file")) == ("loaded", True, "weedscan.onnx")
    card = ModelCard.model_validate_json(shipped_model.with_suffix(".json").read_bytes())
    assert served == card.model_dump(mode="json", exclude_none=True)  # the card, defaults filled in
    assert served["lineage"][-1]["relation"] == "pretrained start"
    spec = http.get("/openapi.json").json()
    ok = spec["paths"]["/v1/models"]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"] == {"$ref": "#/components/schemas/ModelsAnswer"}
    listed = spec["components"]["schemas"]["ListedModel"]["properties"]
    assert set(listed) == set(ListedModel.model_fields) >= {"sha256", "classes", "providers", "state", "lineage"}
    assert set(spec["components"]["schemas"]["BrokenModel"]["properties"]) == set(BrokenModel.model_fields)


def test_models_answer_the_active_model_and_each_typed_card(http: TestClient | httpx.Client,
                                                              shipped_model: Path) -> None:
    check_models(http, shipped_model)


def test_api_doc_describes_that_shape() -> None:
    lines = API_DOC.read_text(encoding="utf-8").splitlines()
    row = next(line for line in lines if line.startswith("| `GET /v1/models`"))
    assert '{"active": NAME, "models": [...]}' in row and "model card" in row and '"providers"' in row
    assert '"state"' in row
