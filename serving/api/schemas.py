"""Response shapes of API v1 for the OpenAPI schema; the answers themselves are serving/answer.py."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from serving.answer import BatchAnswer, BatchError, BatchItem, DetectAnswer, ErrorAnswer, ErrorBody
from serving.engines import EngineChoice
from serving.model_card import ModelCard

__all__ = ["BatchAnswer", "BatchError", "BatchItem", "BrokenModel", "DetectAnswer", "ErrorAnswer",
           "ErrorBody", "Health", "ListedModel", "ModelsAnswer"]


class ListedModel(ModelCard):
    """A model of the models folder: its card (NAME.json, defaults filled in), whether it is
    loaded, and when it is, the engine and precision it runs on."""

    state: Literal["loaded", "available"] = Field(
        description="loaded: in memory, warmed; available: loaded when a request asks for it")
    active: bool = Field(description="answers the requests that name no model")
    file: str = Field(description="the model file in the models folder")
    providers: list[str] | None = Field(None, description="what runs it (ONNX Runtime execution "
                                                          "providers, best first, or OpenVINO CPU)")
    engine: EngineChoice | None = Field(None, description=(
        "when loaded: the engine and precision that run it, and why (WEEDSCAN_ENGINE, "
        "WEEDSCAN_PRECISION and what the card validated)"))


class BrokenModel(BaseModel):
    """A model file the server cannot serve (bad or missing card, sha256 mismatch, damaged file)."""

    name: str
    file: str
    state: Literal["broken"] = "broken"
    active: bool = False
    reason: str


class ModelsAnswer(BaseModel):
    active: str | None = Field(description="the model that answers requests naming none")
    models: list[Annotated[ListedModel | BrokenModel, Field(discriminator="state")]]


class Health(BaseModel):
    status: str
