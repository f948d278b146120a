"""`weedscan quantize --engine openvino`: the model's int8 variant, made offline beside it, recorded
in its card and served by the OpenVINO engine."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from serving.engines.openvino_engine import openvino_available
from tests.training.test_chain import make_dataset

pytestmark = pytest.mark.skipif(importlib.util.find_spec("nncf") is None or not openvino_available(),
                                reason="needs the train and openvino extras (nncf, openvino)")


def copy_of_shipped(shipped_model: Path, folder: Path) -> Path:
    model = folder / "weedscan.onnx"
    shutil.copyfile(shipped_model, model)
    shutil.copyfile(shipped_model.with_suffix(".json"), model.with_suffix(".json"))
    return model


@pytest.mark.slow
def test_quantize_for_openvino_writes_a_checked_variant_beside_the_model_offline(
        tmp_path: Path, shipped_model: Path) -> None:
    from serving.detector import DetectOptions, Detector
    from serving.model_card import load_card, sha256_of
    from tests.netguard import guarded
    from training.cli import app

    model = copy_of_shipped(shipped_model, tmp_path)
    before = load_card(model)
    for stale in before.variants:  # the copy carries the shipped variant's entry, not its files
        assert stale.problem(model) is not None
    data_yaml = make_dataset(tmp_path / "tiny", train=8, val=2, size=320)
    # --max-drop 1: accuracy control takes the first int8 model (the tiny set's scores mean nothing)
    with guarded(allow_loopback=False) as attempts:
        done = CliRunner().invoke(app, ["quantize", str(model), "--engine", "openvino", "--data", str(data_yaml),
                                        "--calib", "8", "--max-drop", "1"])
    assert done.exit_code == 0, done.output
    assert attempts == [], f"network attempts: {attempts}"
    assert "wrote weedscan.openvino-int8.xml and weedscan.openvino-int8.bin" in done.output

    card = load_card(model)  # the .onnx is untouched: its card still verifies
    assert card.sha256 == before.sha256 == sha256_of(model)
    variant = card.variant("openvino", "int8")
    assert variant is not None and variant.problem(model) is None
    assert variant.sha256 == sha256_of(tmp_path / "weedscan.openvino-int8.xml")
    assert variant.method["calibration_inputs"] == 8 and variant.method["attempts"]
    check = card.precision_check("openvino", "int8")
    assert check is not None and check.file == variant.file and set(check.drop) == {"tiny"}
    # the other engines' checks of the shipped card are kept
    assert card.precision_check("onnxruntime", "fp32") == before.precision_check("onnxruntime", "fp32")
    # smaller than the fp32 file: the weights are int8
    assert (tmp_path / variant.weights_file).stat().st_size < 0.5 * model.stat().st_size

    detector = Detector(model, threads=2, engine="openvino", precision="int8")
    reference = Detector(model, threads=2, engine="onnxruntime", precision="fp32")
    image = np.full((320, 320, 3), 114, np.uint8)
    blob = np.zeros((1, 3, detector.input_size, detector.input_size), np.float32) + 0.45
    quantized, exact = detector.engine.run(blob), reference.engine.run(blob)
    assert quantized.shape == exact.shape
    assert np.corrcoef(exact[0, :4].ravel(), quantized[0, :4].ravel())[0, 1] > 0.98  # box rows
    assert detector.detect(image, DetectOptions()).model.precision == "int8"


def test_quantize_for_openvino_refuses_out_and_an_unknown_engine(tmp_path: Path, shipped_model: Path) -> None:
    from training.cli import app

    model = copy_of_shipped(shipped_model, tmp_path)
    data_yaml = tmp_path / "none.yaml"
    refused = CliRunner().invoke(app, ["quantize", str(model), "--engine", "openvino", "--data", str(data_yaml),
                                       "--out", str(tmp_path / "x.onnx")])
    assert refused.exit_code != 0 and "beside the model" in refused.output
    refused = CliRunner().invoke(app, ["quantize", str(model), "--engine", "tensorrt", "--data", str(data_yaml)])
    assert refused.exit_code != 0 and "onnxruntime or openvino" in refused.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weedscan.json", "weedscan.onnx"]
