"""Response shapes of API v1 for the OpenAPI schema; the answers themselves are serving/answer.py."""

from __future__ import annotations

from pydantic import BaseModel, Field

from serving.answer import (BatchAnswer, BatchError, BatchItem, DetectAnswer, ErrorAnswer,
                            ErrorBody)
from serving.model_card import ModelCard

__all__ = ["BatchAnswer", "BatchError", "BatchItem", "DetectAnswer", "ErrorAnswer", "ErrorBody",
           "Health", "LoadedModel", "ModelsAnswer"]


class LoadedModel(ModelCard):
    """A loaded model: its card (models/NAME.json) and the ONNX Runtime providers it runs on."""

    providers: list[str] = Field(description="ONNX Runtime execution providers, best first")


class ModelsAnswer(BaseModel):
    models: list[LoadedModel]


class Health(BaseModel):
    status: str
