"""Models folders for the registry tests: copies of the shipped model under other names."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "weedscan.onnx"


def add_copy(folder: Path, name: str, version: str | None = None) -> Path:
    """The shipped weights as NAME.onnx with a card of that name (its sha256 stays valid)."""
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / f"{name}.onnx"
    shutil.copyfile(SHIPPED, model)
    card = json.loads(SHIPPED.with_suffix(".json").read_text(encoding="utf-8"))
    card["name"], card["version"] = name, version or f"{card['version']}-{name}"
    model.with_suffix(".json").write_text(json.dumps(card), encoding="utf-8")
    return model


def add_broken(folder: Path) -> dict[str, str]:
    """Broken models: a sha256 mismatch, no card, a damaged file whose card matches, and outputs
    that do not fit the card's classes; name -> what the reason says."""
    folder.mkdir(parents=True, exist_ok=True)
    card = json.loads(SHIPPED.with_suffix(".json").read_text(encoding="utf-8"))
    (folder / "mismatch.onnx").write_bytes(b"not the model")
    (folder / "mismatch.json").write_text(json.dumps({**card, "name": "mismatch"}), encoding="utf-8")
    (folder / "nocard.onnx").write_bytes(SHIPPED.read_bytes())
    damaged = SHIPPED.read_bytes()[:300_000]
    (folder / "damaged.onnx").write_bytes(damaged)
    (folder / "damaged.json").write_text(json.dumps(
        {**card, "name": "damaged", "sha256": hashlib.sha256(damaged).hexdigest()}), encoding="utf-8")
    (folder / "threeclass.onnx").write_bytes(SHIPPED.read_bytes())  # outputs for 2 classes
    (folder / "threeclass.json").write_text(json.dumps(
        {**card, "name": "threeclass", "classes": ["crop", "weed", "stone"]}), encoding="utf-8")
    return {"mismatch": "sha256", "nocard": "model card not found", "damaged": "cannot load the model",
            "threeclass": "does not fit its card"}


def models_folder(root: Path, *names: str) -> Path:
    """A folder with the shipped model (weedscan) and copies named `names`."""
    folder = root / "models"
    shipped_card = json.loads(SHIPPED.with_suffix(".json").read_text(encoding="utf-8"))
    add_copy(folder, "weedscan", version=shipped_card["version"])
    for name in names:
        add_copy(folder, name)
    return folder
