"""The model card (models/NAME.json) and the check that it belongs to its .onnx file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from serving.errors import ModelCardError


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def card_path_for(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def load_card(model_path: Path, verify: bool = True) -> dict[str, Any]:
    """Read NAME.json beside NAME.onnx; refuse it when its sha256 does not match the model."""
    card_path = card_path_for(model_path)
    if not model_path.is_file():
        raise ModelCardError(f"model file not found: {model_path}")
    if not card_path.is_file():
        raise ModelCardError(f"model card not found: {card_path} (every model needs its card)")
    try:
        card = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelCardError(f"model card {card_path} is not valid JSON: {exc}") from exc
    for key in ("name", "classes", "sha256"):
        if key not in card:
            raise ModelCardError(f"model card {card_path} lacks the field '{key}'")
    if verify:
        actual = sha256_of(model_path)
        if actual != card["sha256"]:
            raise ModelCardError(
                f"sha256 of {model_path.name} is {actual} but its card says {card['sha256']}: "
                "the model and its card do not belong together; refusing to load")
    return card
