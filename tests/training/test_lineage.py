"""Lineage in the model card: a chain from the immediate parent back to the pretrained start."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from serving.errors import ModelCardError
from serving.model_card import LineageEntry, ModelCard, load_card, sha256_of
from training.lineage import lineage_from_parent

REPO = Path(__file__).resolve().parents[2]
PRETRAINED = (REPO / ".." / "shared" / "pretrained" / "yolov8n-coco-int8.onnx").resolve()
START_SHA = "83de8f0d2cd521e00ae2b138c340a03dece35b060b3898509bdc69afff417312"


def test_the_shipped_card_leads_back_to_the_coco_start(shipped_model: Path) -> None:
    card = load_card(shipped_model)  # the weights still match the card
    assert card.lineage, "the shipped card names its ancestors"
    assert [e.relation for e in card.lineage[:-1]] == ["fine-tuned from"] * (len(card.lineage) - 1)
    start = card.lineage[-1]
    assert start.relation == "pretrained start" and start.file == "yolov8n-coco-int8.onnx"
    assert start.sha256 == START_SHA and start.licence == "AGPL-3.0"
    assert "github.com/Lamri-Meriem/edge-object-detection" in start.source
    assert card.sha256 not in {e.sha256 for e in card.lineage}  # no model is its own ancestor


def test_a_file_without_a_card_is_the_pretrained_start() -> None:
    if not PRETRAINED.is_file():
        pytest.skip(f"pretrained weights not found at {PRETRAINED}")
    (entry,) = lineage_from_parent(PRETRAINED)
    assert entry == LineageEntry(name="yolov8n-coco-int8", file="yolov8n-coco-int8.onnx",
                                 sha256=START_SHA, relation="pretrained start",
                                 source=entry.source, licence="AGPL-3.0")
    assert "6f7f95f7" in entry.source


def test_a_child_of_the_shipped_model_carries_the_whole_chain(shipped_model: Path) -> None:
    chain = lineage_from_parent(shipped_model)
    parent = load_card(shipped_model)
    assert chain[0].sha256 == parent.sha256 and chain[0].relation == "fine-tuned from"
    assert chain[0].name == parent.name and chain[0].licence == parent.licence
    assert chain[1:] == parent.lineage
    # a grandchild's card written with it passes the card's own validation
    ModelCard.model_validate({**parent.model_dump(), "lineage": [e.model_dump() for e in chain]})


def test_a_parent_that_does_not_match_its_card_is_refused(shipped_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(shipped_model.read_bytes()[:1000])
    card = json.loads(shipped_model.with_suffix(".json").read_text(encoding="utf-8"))
    model.with_suffix(".json").write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(ModelCardError, match="sha256"):
        lineage_from_parent(model)
    with pytest.raises(ModelCardError, match="not found"):
        lineage_from_parent(tmp_path / "missing.onnx")


def test_an_old_card_without_lineage_falls_back_to_its_recipe(shipped_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "old.onnx"
    shutil.copy(shipped_model, model)
    card = json.loads(shipped_model.with_suffix(".json").read_text(encoding="utf-8"))
    card.pop("lineage")
    card["training_recipe"]["pretrained_start"] = {
        "file": "yolov8n-coco-int8.onnx", "sha256": START_SHA, "source": "github.com/x @ 1",
        "licence": "AGPL-3.0 License (https://ultralytics.com/license)"}
    model.with_suffix(".json").write_text(json.dumps(card), encoding="utf-8")
    chain = lineage_from_parent(model)
    assert [e.relation for e in chain] == ["fine-tuned from", "pretrained start"]
    assert chain[0].sha256 == sha256_of(model) and chain[1].licence == "AGPL-3.0"


def test_a_run_records_the_lineage_of_its_start(shipped_model: Path, tmp_path: Path) -> None:
    from training.lineage import lineage_of_run

    assert lineage_of_run(None, None) == []  # from scratch
    recorded = lineage_of_run(str(shipped_model), {"sha256": sha256_of(shipped_model)})
    assert recorded == lineage_from_parent(shipped_model)
    # the start file moved away since: what the run recorded of it
    gone = {"file": "yolov8n-coco-int8.onnx", "sha256": START_SHA, "source": "github.com/x @ 1",
            "licence": "AGPL-3.0 License (https://ultralytics.com/license)"}
    (entry,) = lineage_of_run(str(tmp_path / "yolov8n-coco-int8.onnx"), gone)
    assert entry.relation == "pretrained start" and entry.sha256 == START_SHA and entry.licence == "AGPL-3.0"
