"""GET /v1/models answers the typed model card plus its providers, as README says; in process
and over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from serving.api.schemas import LoadedModel, ModelsAnswer
from serving.model_card import ModelCard
from tests.serving.conftest import LiveServer

README = Path(__file__).resolve().parents[2] / "README.md"


def check_models(http: TestClient | httpx.Client, shipped_model: Path) -> None:
    body = http.get("/v1/models").json()
    ModelsAnswer.model_validate(body)
    assert list(body) == ["models"] and len(body["models"]) == 1
    served = dict(body["models"][0])
    providers = served.pop("providers")
    assert providers and all(p.endswith("ExecutionProvider") for p in providers)
    card = ModelCard.model_validate_json(shipped_model.with_suffix(".json").read_bytes())
    assert served == card.model_dump(mode="json", exclude_none=True)  # the card, defaults filled in
    spec = http.get("/openapi.json").json()
    ok = spec["paths"]["/v1/models"]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"] == {"$ref": "#/components/schemas/ModelsAnswer"}
    loaded = spec["components"]["schemas"]["LoadedModel"]["properties"]
    assert set(loaded) == set(LoadedModel.model_fields) >= {"sha256", "classes", "providers"}


def test_models_in_process(client: TestClient, shipped_model: Path) -> None:
    check_models(client, shipped_model)


def test_models_over_http(live_server: LiveServer, shipped_model: Path) -> None:
    check_models(live_server.http, shipped_model)


def test_readme_describes_that_shape() -> None:
    row = next(line for line in README.read_text().splitlines() if line.startswith("| `GET /v1/models`"))
    assert '{"models": [...]}' in row and "model card" in row and '"providers"' in row
