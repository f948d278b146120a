"""A model card's lineage: the chain of files a model was trained from, parent first.

`lineage_from_parent` is what an exporter or fine-tuner records for a model trained from
`parent_onnx`: the parent itself, then the parent's own lineage from its card (NAME.json beside
it), so the chain reaches the pretrained start. A file without a weedscan card (an Ultralytics
COCO export such as ../shared/pretrained/yolov8n-coco-int8.onnx) is the pretrained start: its
origin comes from its ONNX metadata and the SOURCE.md row beside it (training/pretrained.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from serving.errors import ModelCardError
from serving.model_card import LineageEntry, ModelCard, card_path_for, load_card, sha256_of

FINE_TUNED = "fine-tuned from"
PRETRAINED = "pretrained start"


def licence_name(text: str) -> str:
    """'AGPL-3.0 License (https://ultralytics.com/license)' -> 'AGPL-3.0'; other text as it is."""
    match = re.match(r"\s*([A-Za-z0-9.+-]+)\s+License\b", text)
    return match.group(1) if match else (text.strip() or "unknown")


def pretrained_entry(path: Path) -> LineageEntry:
    """The lineage's last entry: a pretrained file without a weedscan card."""
    from training.pretrained import pretrained_origin

    origin = pretrained_origin(path)
    return LineageEntry(name=path.stem, file=path.name, sha256=origin.sha256, relation=PRETRAINED,
                        source=origin.source, licence=licence_name(origin.licence))


def _recorded_start(card: ModelCard) -> list[LineageEntry]:
    """For a card written before lineage was kept: its recipe's pretrained_start, as far as it
    goes (a start whose source is unknown was an earlier weedscan run, not the first weights)."""
    start: Any = card.training_recipe.get("pretrained_start")
    if not isinstance(start, dict) or not re.fullmatch(r"[0-9a-f]{64}", str(start.get("sha256", ""))):
        return []
    source = str(start.get("source", ""))
    relation = FINE_TUNED if source.startswith("unknown") else PRETRAINED
    file = str(start.get("file") or "unknown")
    return [LineageEntry(name=Path(file).stem, file=file, sha256=start["sha256"], relation=relation,
                         source=source, licence=licence_name(str(start.get("licence", ""))))]


def lineage_from_parent(parent_onnx: Path) -> list[LineageEntry]:
    """The lineage of a model trained from `parent_onnx`: the parent first, back to the
    pretrained start. A parent with a card must match it (sha256); ModelCardError otherwise."""
    parent_onnx = Path(parent_onnx)
    if not parent_onnx.is_file():
        raise ModelCardError(f"parent model not found: {parent_onnx}")
    if not card_path_for(parent_onnx).is_file():
        return [pretrained_entry(parent_onnx)]
    card = load_card(parent_onnx)  # checks the sha256
    parent = LineageEntry(name=card.name, file=parent_onnx.name, sha256=card.sha256,
                          relation=FINE_TUNED, source=str(parent_onnx),
                          licence=card.licence)
    return [parent, *(card.lineage or _recorded_start(card))]


def lineage_of_run(weights: str | None, pretrained: dict[str, Any] | None) -> list[LineageEntry]:
    """The lineage of a model trained from `weights` (a run's --weights; None: from scratch):
    the file's own chain when it is still there and is the file the run recorded, else what
    the run recorded of its start."""
    if not weights:
        return []
    path = Path(weights)
    recorded_sha = str((pretrained or {}).get("sha256", ""))
    if path.suffix == ".onnx" and path.is_file():
        try:
            if not recorded_sha or sha256_of(path) == recorded_sha:
                return lineage_from_parent(path)
        except Exception:  # noqa: BLE001 - an unreadable start: fall back to the run's record
            pass
    if pretrained:
        card = ModelCard.model_construct(training_recipe={"pretrained_start": pretrained})
        return _recorded_start(card)
    return []


__all__ = ["FINE_TUNED", "PRETRAINED", "LineageEntry", "lineage_from_parent", "licence_name",
           "lineage_of_run", "pretrained_entry", "sha256_of"]
