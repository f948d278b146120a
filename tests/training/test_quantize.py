"""`weedscan quantize`: an int8 copy of the shipped model that loads, stays close, and is carded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.training.test_chain import make_dataset


def quantized_outputs_of(model_path: Path, op_type: str) -> int:
    """How many op_type nodes have their output quantized (QDQ: it feeds a QuantizeLinear)."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    quantized_inputs = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    return sum(1 for n in graph.node if n.op_type == op_type and n.output[0] in quantized_inputs)


@pytest.mark.slow
@pytest.mark.parametrize("ops", ["all", "conv"])
def test_quantize_writes_a_close_int8_copy_with_its_card(tmp_path: Path, shipped_model: Path,
                                                         ops: str) -> None:
    from serving.detector import DetectOptions, Detector
    from serving.model_card import sha256_of
    from serving.preprocess import letterbox, to_blob
    from training.cli import app

    model = tmp_path / "weedscan.onnx"
    shutil.copyfile(shipped_model, model)
    shutil.copyfile(shipped_model.with_suffix(".json"), model.with_suffix(".json"))
    data_yaml = make_dataset(tmp_path / "tiny", train=8, val=2, size=320)
    # Calibrate on the tiny set; scoring needs Ultralytics' metrics and is covered by eval's tests.
    from training.quantize import quantize

    out = quantize(model, [data_yaml], tmp_path / "int8.onnx", calib_count=8, evaluate_on=None, ops=ops)
    card = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert card["sha256"] == sha256_of(out) and card["quantization"]["operators"] == ops
    assert card["quantization"]["source_sha256"] == sha256_of(model)
    assert out.stat().st_size < 0.5 * model.stat().st_size

    # ops=all also runs the SiLUs' sigmoids in int8; ops=conv leaves them in float.
    sigmoids = quantized_outputs_of(out, "Sigmoid")
    assert (sigmoids > 10) if ops == "all" else (sigmoids == 0), sigmoids

    # The int8 head computes nearly what the fp32 head does (boxes and class scores).
    image = cv2.imread(str(tmp_path / "tiny" / "images" / "val" / "val_0.jpg"))
    fp32_detector, int8_detector = Detector(model), Detector(out)
    blob = to_blob([letterbox(image, fp32_detector.input_size)[0]])
    reference = fp32_detector.engine.run(blob)
    quantized = int8_detector.engine.run(blob)
    assert np.corrcoef(reference.ravel(), quantized.ravel())[0, 1] > 0.98
    # Class scores stay probabilities: an int8 output Concat would share one scale with the pixel
    # coordinates beside them and round every score to 0 or ~1.25.
    scores = quantized[0, 4:]
    assert scores.max() <= 1.0 and len(np.unique(scores)) > 100
    # Calibrated on 8 synthetic images: bounds, not an accuracy figure (bench_int8.py scores int8
    # copies on val). Scores rounded to 0 or ~1.25 would miss by ~1 nearly everywhere; measured
    # worst / 99th percentile: 0.19 / 0.001 on the 94-epoch model, 0.42 / 0.009 on the 147-epoch one.
    error = np.abs(reference[0, 4:] - scores)
    assert error.max() < 0.6 and np.quantile(error, 0.99) < 0.05, (error.max(), np.quantile(error, 0.99))
    answer = int8_detector.detect(image, DetectOptions(tile="off"))
    assert answer.detections.scores.size == len(answer.detections.boxes)

    refused = CliRunner().invoke(app, ["quantize", str(model), "--data", str(data_yaml), "--ops", "fp16"])
    assert refused.exit_code != 0 and "--ops takes all or conv" in refused.output
    refused = CliRunner().invoke(app, ["quantize", str(model), "--data", str(data_yaml), "--method", "kl"])
    assert refused.exit_code != 0 and "--method takes minmax" in refused.output
    kept = out.read_bytes()
    refused = CliRunner().invoke(app, ["quantize", str(model), "--data", str(data_yaml), "--out", str(out)])
    assert refused.exit_code != 0 and "--force" in refused.output and out.read_bytes() == kept


@pytest.mark.slow
def test_quantize_scores_each_engine_against_the_fp32_source_offline(tmp_path: Path, shipped_model: Path) -> None:
    """The int8 copy's card says what it lost per val split against its fp32 source, in ONNX
    Runtime and (with the extra) OpenVINO; nothing reaches the network, OpenVINO included."""
    from serving.engines.openvino_engine import openvino_available
    from tests.netguard import guarded
    from training.cli import app

    model = tmp_path / "weedscan.onnx"
    shutil.copyfile(shipped_model, model)
    shutil.copyfile(shipped_model.with_suffix(".json"), model.with_suffix(".json"))
    data_yaml = make_dataset(tmp_path / "tiny", train=8, val=2, size=320)
    out = tmp_path / "int8.onnx"
    with guarded(allow_loopback=False) as attempts:
        done = CliRunner().invoke(app, ["quantize", str(model), "--data", str(data_yaml), "--out", str(out),
                                        "--calib", "8"])
    assert done.exit_code == 0, done.output
    assert attempts == [], f"network attempts: {attempts}"
    card = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    checks = {(c["engine"], c["precision"]): c for c in card["precision_checks"]}
    have_openvino = openvino_available()
    assert set(checks) == {("onnxruntime", "int8"), *([("openvino", "int8")] if have_openvino else [])}
    int8 = checks[("onnxruntime", "int8")]
    assert int8["map50"] == {"tiny": round(card["metrics"]["tiny"]["mAP50"], 4)}
    # the drop is against the source scored now on the same split, not the int8 file itself
    from training.evaluate import evaluate

    source = evaluate(model, [data_yaml], "val", engine="onnxruntime", precision="fp32").datasets["tiny"].mAP50
    assert int8["drop"] == {"tiny": round(round(source, 4) - int8["map50"]["tiny"], 4)}


@pytest.mark.parametrize("missing", [("onnx",), ("ultralytics",), ("onnx", "ultralytics")])
def test_quantize_without_the_train_extra_says_what_to_install_before_any_work(
        tmp_path: Path, shipped_model: Path, monkeypatch: pytest.MonkeyPatch, missing: tuple[str, ...]) -> None:
    import sys

    from training import quantize as quantize_module
    from training.cli import app

    for name in missing:  # a serving-only install: `import onnx` fails, find_spec finds nothing
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(quantize_module, "Detector", lambda *a, **k: pytest.fail("work started"))
    data_yaml = make_dataset(tmp_path / "tiny", train=1, val=1)
    out = tmp_path / "int8.onnx"
    result = CliRunner().invoke(app, ["quantize", str(shipped_model), "--data", str(data_yaml), "--out", str(out)])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.exception
    assert result.output.strip() == "error: this command needs the trainer side: pip install -e '.[train]'"
    assert not out.exists()
    with pytest.raises(SystemExit, match=r"pip install -e '\.\[train\]'"):  # called as a function too
        quantize_module.quantize(shipped_model, [data_yaml], out)


def test_quantize_overwrites_an_existing_output_only_with_force(tmp_path: Path, shipped_model: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from training import quantize as quantize_module
    from training.cli import app

    made: list[Path] = []
    monkeypatch.setattr(quantize_module, "quantize", lambda model, data, out, *a, **k: made.append(out))
    data_yaml = make_dataset(tmp_path / "tiny", train=1, val=1)
    out = tmp_path / "int8.onnx"
    out.write_bytes(b"an earlier int8 model")
    args = ["quantize", str(shipped_model), "--data", str(data_yaml), "--out", str(out)]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and f"{out} exists" in " ".join(refused.output.split()), refused.output
    assert "--force" in refused.output and made == [] and out.read_bytes() == b"an earlier int8 model"
    forced = CliRunner().invoke(app, [*args, "--force"])
    assert forced.exit_code == 0 and made == [out], forced.output


def test_quantize_makes_the_folder_of_out_and_names_one_it_cannot_make(
        tmp_path: Path, shipped_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training import quantize as quantize_module
    from training.cli import app

    made: list[Path] = []
    monkeypatch.setattr(quantize_module, "quantize", lambda model, data, out, *a, **k: made.append(out))
    data_yaml = make_dataset(tmp_path / "tiny", train=1, val=1)
    out = tmp_path / "not" / "made" / "yet" / "int8.onnx"
    made_folder = CliRunner().invoke(app, ["quantize", str(shipped_model), "--data", str(data_yaml), "--out", str(out)])
    assert made_folder.exit_code == 0 and made == [out] and out.parent.is_dir(), made_folder.output
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder", encoding="utf-8")
    refused = CliRunner().invoke(app, ["quantize", str(shipped_model), "--data", str(data_yaml),
                                       "--out", str(blocked / "int8.onnx")])
    assert refused.exit_code == 2 and "cannot make the folder" in refused.output and "Traceback" not in refused.output
    assert made == [out]
