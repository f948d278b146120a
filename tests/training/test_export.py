"""`weedscan export`: checked in a hidden folder before anything is replaced, a card that says what
this model detects, and a parity check that catches a model computing something else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.training.reports import dataset_scores, eval_report
from tests.training.test_chain import make_dataset
from training.export import ParityReport


def a_new_export(shipped_model: Path, folder: Path) -> Path:
    """Another valid ONNX file (the shipped model with one metadata value changed), as
    Ultralytics' export would leave it beside the weights."""
    import onnx

    model = onnx.load(str(shipped_model))
    for prop in model.metadata_props:
        if prop.key == "date":
            prop.value = "a later export"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "best.onnx"
    onnx.save(model, str(path))
    assert path.read_bytes() != shipped_model.read_bytes()
    return path


@pytest.fixture
def staged_export(tmp_path: Path, shipped_model: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """export() with Ultralytics' part (the .pt -> .onnx step) replaced by a prepared file."""
    from training import export as export_module

    exported = a_new_export(shipped_model, tmp_path / "run" / "weights")
    monkeypatch.setattr(export_module, "export_onnx", lambda weights, imgsz, nms_free=False: exported)
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(shipped_model, models / "weedscan.onnx")
    shutil.copyfile(shipped_model.with_suffix(".json"), models / "weedscan.json")
    data_yaml = make_dataset(tmp_path / "tiny", train=1, val=2)
    return export_module, exported, models, data_yaml


def test_a_failed_parity_check_leaves_the_models_folder_as_it_was(
        staged_export, shipped_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    export_module, exported, models, data_yaml = staged_export
    checked: list[Path] = []

    def failing_parity(weights: Path, detector, images: list[Path]) -> dict:  # noqa: ANN001
        checked.append(detector.model_path)
        raise export_module.ParityError("the ONNX model's raw output differs")

    monkeypatch.setattr(export_module, "check_parity", failing_parity)
    before = {p.name: p.read_bytes() for p in models.iterdir()}
    weights = exported.with_suffix(".pt")
    with pytest.raises(export_module.ParityError):
        export_module.export(weights, "weedscan", [data_yaml], models, force=True)
    assert {p.name: p.read_bytes() for p in models.iterdir()} == before, "the good model was replaced"
    # The check ran on the new model, in a hidden folder of models_dir, now gone.
    assert checked and checked[0].parent.parent == models and checked[0].parent.name.startswith(".")
    with pytest.raises(export_module.ParityError):
        export_module.export(weights, "other", [data_yaml], models)
    assert {p.name for p in models.iterdir()} == set(before), "no unchecked model, no temp files"


def test_a_checked_export_replaces_the_model_and_its_card_together(
        staged_export, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from serving.detector import Detector
    from serving.model_card import sha256_of

    export_module, exported, models, data_yaml = staged_export
    parity_borders: list[int] = []

    def parity(weights: Path, detector, images: list[Path]) -> ParityReport:  # noqa: ANN001
        parity_borders.append(detector.input_border)
        return ParityReport(images=len(images), confident_boxes=0, matched=0,
                            raw_output_max_relative_gap=0.0)

    monkeypatch.setattr(export_module, "check_parity", parity)
    scored = eval_report(conf=0.3, conf_source="max-f1", tiny=dataset_scores(mAP50=0.5, conf=0.3))
    monkeypatch.setattr(export_module, "evaluate", lambda *a, **k: scored)
    # Each engine and precision is scored by tests/training/test_chain.py; here, that the export
    # asks for it on the model being checked, with the score it already has.
    precision_checks: list[tuple[Path, list[Path], object]] = []
    monkeypatch.setattr(export_module, "check_precisions", lambda model, yamls, split, scored=None:
                        precision_checks.append((model, yamls, scored)) or [])
    with pytest.raises(export_module.ExistingModelError, match="--force"):
        export_module.export(exported.with_suffix(".pt"), "weedscan", [data_yaml], models)
    path = export_module.export(exported.with_suffix(".pt"), "weedscan", [data_yaml], models, force=True)
    [(checked, yamls, given)] = precision_checks
    assert checked.parent.parent == models and checked.parent.name.startswith(".") and checked.name == path.name
    assert yamls == [data_yaml] and given is scored
    assert path == models / "weedscan.onnx" and path.read_bytes() == exported.read_bytes()
    assert sorted(p.name for p in models.iterdir()) == ["weedscan.json", "weedscan.onnx"]
    card = json.loads((models / "weedscan.json").read_text(encoding="utf-8"))
    assert card["sha256"] == sha256_of(path) and card["export_parity"]["images"] == 2
    assert card["thresholds"]["conf"] == 0.3 and card["metrics"]["tiny"]["mAP50"] == 0.5
    assert Detector(path).default_conf == 0.3
    # Served with half a stride of grey around each image; parity (against Ultralytics' predict,
    # which fills the input) compares without it.
    assert card["input_border"] == 16 and Detector(path).input_border == 16 and parity_borders == [0]
    export_module.export(exported.with_suffix(".pt"), "weedscan", [data_yaml], models, force=True,
                         input_border=0)
    assert Detector(path).input_border == 0


def test_the_card_says_what_this_model_detects_and_names_no_absolute_path(tmp_path: Path,
                                                                          shipped_model: Path) -> None:
    from training.export import REPO, OnnxInputs, build_card
    from training.train import RunRecord

    record = RunRecord.model_validate(
        {"config": {"data": [str(tmp_path / "nowhere" / "data.yaml")]},
         "pretrained": {"file": "start.onnx", "licence": "AGPL-3.0",
                        "description": f"YOLOv8n trained on {REPO}/runs/train/coco/data.yaml "
                                       f"and {tmp_path}/elsewhere/extra.yaml"}})
    inputs = OnnxInputs(classes=["maize", "thistle", "dock"], input_size=96, layout="raw")
    card = build_card("mine", "1", shipped_model, inputs, record, {}, None, None)
    assert "'maize', 'thistle' and 'dock'" in card.intended_use and "nowhere" in card.intended_use
    assert "weed" not in card.intended_use.lower()  # no class it lacks
    assert "The only classes are 'maize', 'thistle' and 'dock': it tells no species apart." in card.limitations
    assert not any("'crop' and 'weed'" in line for line in card.limitations)
    written = card.model_dump_json()
    assert str(tmp_path) not in written and str(REPO) not in written, written
    assert "runs/train/coco/data.yaml" in written and "extra.yaml" in written
    assert "https://ultralytics.com" in build_card(  # URLs and prose stay as they are
        "mine", "1", shipped_model, inputs,
        RunRecord(pretrained={"description": "see https://ultralytics.com/x/y"}), {}, None,
        None).model_dump_json()

    crop_weed = build_card("mine", "1", shipped_model, inputs.model_copy(update={"classes": ["crop", "weed"]}),
                           record, {}, None, None)
    assert "'crop' and 'weed'" in crop_weed.intended_use and "weeding" in crop_weed.intended_use


def test_the_shipped_card_says_what_the_exporter_would_write(shipped_model: Path) -> None:
    from training.export import intended_use, without_absolute_paths

    card = json.loads(shipped_model.with_suffix(".json").read_text(encoding="utf-8"))
    assert card == without_absolute_paths(card)
    assert card["intended_use"] == intended_use(card["classes"], card["training_data"])


def test_end_to_end_rows_compare_scores_and_boxes_whatever_their_order() -> None:
    from training.export import end_to_end_gap

    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.uniform(0, 96, (1, 20, 4)), rng.uniform(0.01, 0.9, (1, 20, 1)),
                           rng.integers(0, 2, (1, 20, 1))], axis=-1).astype(np.float32)
    assert end_to_end_gap(rows, rows[:, ::-1]) == 0.0  # ranked the other way round: the same
    moved = rows.copy()
    moved[0, 3, :4] += 20  # one box elsewhere, every score the same
    assert end_to_end_gap(rows, moved) > 0.1
    relabelled = rows.copy()
    relabelled[0, 3, 5] = 1 - relabelled[0, 3, 5]
    assert end_to_end_gap(rows, relabelled) > 0.1


def fresh_checkpoint(folder: Path, architecture: str) -> Path:
    """A freshly initialised 2-class model saved as Ultralytics saves weights. Its BatchNorm
    statistics are those of random images: with the initial ones the activations fade layer by
    layer and the head outputs its biases whatever the weights before it."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel(architecture, nc=2, verbose=False)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the batch below
    model.train()
    with torch.no_grad():
        model(torch.rand(4, 3, 64, 64))
    model.eval()
    for norm in norms:
        norm.momentum = 0.03
    model.names = {0: "crop", 1: "weed"}
    folder.mkdir(parents=True)
    checkpoint = folder / "fresh.pt"
    torch.save({"model": model, "train_args": {}}, checkpoint)
    return checkpoint


@pytest.mark.slow
@pytest.mark.parametrize(("architecture", "nms_free", "perturbed"), [
    ("yolov8n.yaml", False, "model.22.cv3.0.2.weight"),  # raw head: a class logit conv
    ("yolo26n.yaml", True, "model.23.one2one_cv2.0.2.weight"),  # end-to-end: box regression only
], ids=["raw", "end2end-boxes"])
def test_the_same_architecture_with_other_weights_fails_parity_on_values(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, architecture: str, nms_free: bool,
        perturbed: str) -> None:
    import torch

    from serving.detector import Detector
    from serving.model_card import write_card
    from training.export import ParityError, build_card, check_parity, export_onnx, onnx_metadata, raw_output_gap
    from training.offline import import_ultralytics
    from training.train import RunRecord

    monkeypatch.setenv("WEEDSCAN_CACHE", str(tmp_path / "cache"))
    import_ultralytics()
    from ultralytics import YOLO

    checkpoint = fresh_checkpoint(tmp_path / "good", architecture)
    onnx_path = export_onnx(checkpoint, 64, nms_free)
    inputs = onnx_metadata(onnx_path)
    assert inputs.layout == ("end2end" if nms_free else "raw")
    write_card(onnx_path, build_card("fresh", "1", onnx_path, inputs, RunRecord(), {}, None, None))
    detector = Detector(onnx_path)
    data_yaml = make_dataset(tmp_path / "tiny", train=1, val=2, size=64)
    images = sorted((data_yaml.parent / "images" / "val").glob("*.jpg"))
    assert check_parity(checkpoint, detector, images).raw_output_max_relative_gap <= 1e-3

    weights = torch.load(checkpoint, weights_only=False)
    parameter = dict(weights["model"].named_parameters())[perturbed]
    with torch.no_grad():
        parameter.add_(torch.randn_like(parameter) * parameter.abs().mean())
    other = tmp_path / "other" / "fresh.pt"
    other.parent.mkdir()
    torch.save(weights, other)
    import cv2

    model = YOLO(str(other))
    if hasattr(model.model, "end2end"):  # the head the ONNX model has, as check_parity does
        model.model.end2end = nms_free
    gap = raw_output_gap(model, detector, cv2.imread(str(images[0])))
    assert 1e-3 < gap < float("inf"), gap  # the same shapes: it is the values that differ
    with pytest.raises(ParityError, match="raw output differs"):
        check_parity(other, detector, images)
