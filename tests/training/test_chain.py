"""The whole trainer chain on tiny data made here, with the network blocked:
dataset -> data check -> train 1 epoch -> export -> eval -> served by `serving`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from serving.engines.openvino_engine import openvino_available
from tests.netguard import guarded
from tests.training.reports import eval_report

HAVE_OPENVINO = openvino_available()


def make_dataset(root: Path, train: int = 8, val: int = 4, size: int = 160) -> Path:
    """Green discs (crop, class 0) and thin green crosses (weed, class 1) on soil."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(count):
            image = np.full((size, size, 3), (30, 60, 100), np.uint8)
            lines = []
            for class_id in (0, 1, 1):
                r = int(rng.integers(10, 20))
                cx, cy = (int(v) for v in rng.integers(r + 2, size - r - 2, 2))
                if class_id == 0:
                    cv2.circle(image, (cx, cy), r, (40, 180, 60), -1)
                else:
                    cv2.line(image, (cx - r, cy), (cx + r, cy), (60, 200, 90), 3)
                    cv2.line(image, (cx, cy - r), (cx, cy + r), (60, 200, 90), 3)
                lines.append(f"{class_id} {cx / size:.6f} {cy / size:.6f} {2 * r / size:.6f} {2 * r / size:.6f}")
            cv2.imwrite(str(root / "images" / split / f"{split}_{i}.jpg"), image)
            (root / "labels" / split / f"{split}_{i}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data_yaml = root / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"train": "images/train", "val": "images/val",
                                         "names": ["crop", "weed"]}), encoding="utf-8")
    return data_yaml


@pytest.mark.slow
def test_dataset_to_served_model_with_the_network_blocked(tmp_path: Path, shipped_model: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from training.cli import app

    monkeypatch.setenv("WEEDSCAN_CACHE", str(tmp_path / "cache"))
    data_yaml = make_dataset(tmp_path / "tiny")
    runner = CliRunner()
    models_dir = tmp_path / "models"
    with guarded(allow_loopback=False) as attempts:
        checked = runner.invoke(app, ["data", "check", str(tmp_path / "tiny")])
        assert checked.exit_code == 0, checked.output

        trained = runner.invoke(app, ["train", "--data", str(data_yaml), "--model", "yolo26n.yaml",
                                      "--imgsz", "96", "--epochs", "1", "--batch", "4", "--no-plots",
                                      "--project", str(tmp_path / "runs"), "--name", "chain"])
        assert trained.exit_code == 0, trained.output
        weights = tmp_path / "runs" / "chain" / "weights" / "best.pt"
        assert weights.is_file()
        record = json.loads((tmp_path / "runs" / "chain" / "weedscan_train.json").read_text(encoding="utf-8"))
        assert record["config"]["imgsz"] == 96 and record["versions"]["ultralytics"]
        # Ultralytics' plots (on by default: test_pretrained.py trains with them)
        assert record["config"]["plots"] is False and not list((tmp_path / "runs" / "chain").glob("*.png"))

        # The first export without the precision checks, the forced one below with them.
        exported = runner.invoke(app, ["export", str(weights), "--name", "tiny", "--models-dir",
                                       str(models_dir), "--nms-free", "--no-precision-checks"])
        assert exported.exit_code == 0, exported.output
        first_card = (models_dir / "tiny.json").read_text(encoding="utf-8")
        assert json.loads(first_card)["precision_checks"] == []
        again = runner.invoke(app, ["export", str(weights), "--name", "tiny", "--models-dir",
                                    str(models_dir), "--nms-free"])
        assert again.exit_code != 0 and "exists" in again.output and "--force" in again.output
        assert (models_dir / "tiny.json").read_text(encoding="utf-8") == first_card, "a refused export changed nothing"
        forced = runner.invoke(app, ["export", str(weights), "--name", "tiny", "--models-dir",
                                     str(models_dir), "--nms-free", "--force"])
        assert forced.exit_code == 0, forced.output

        report = tmp_path / "eval.json"
        evaluated = runner.invoke(app, ["eval", str(models_dir / "tiny.onnx"), "--data",
                                        str(data_yaml), "--report", str(report), "--plots"])
        assert evaluated.exit_code == 0, evaluated.output
        assert (tmp_path / "eval-plots" / "tiny" / "confusion_matrix.png").is_file()
        if HAVE_OPENVINO:  # scored as the server would run it on OpenVINO
            on_openvino = runner.invoke(app, ["eval", str(models_dir / "tiny.onnx"), "--data", str(data_yaml),
                                              "--engine", "openvino", "--report", str(tmp_path / "eval-ov.json")])
            assert on_openvino.exit_code == 0, on_openvino.output
            assert json.loads((tmp_path / "eval-ov.json").read_text(encoding="utf-8"))["model"]["engine"] == "openvino"
        rechecked = runner.invoke(app, ["precision", str(models_dir / "tiny.onnx"), "--data", str(data_yaml)])
        assert rechecked.exit_code == 0 and "auto may use" in rechecked.output, rechecked.output
        wrong = runner.invoke(app, ["eval", str(models_dir / "tiny.onnx"), "--data", str(data_yaml),
                                    "--precision", "fp16", "--report", str(tmp_path / "never.json")])
        assert wrong.exit_code != 0 and "--precision: auto, fp32, bf16, int8" in wrong.output
    assert attempts == [], f"network attempts: {attempts}"

    # export scored each engine and precision this machine offers into the card
    from serving.engines.cpu import this_cpu

    card = json.loads((models_dir / "tiny.json").read_text(encoding="utf-8"))
    checks = {(c["engine"], c["precision"]): c for c in card["precision_checks"]}
    expected = {("onnxruntime", "fp32")}
    if HAVE_OPENVINO:
        expected |= {("openvino", "fp32")} | ({("openvino", "bf16")} if this_cpu().native_bf16 else set())
    assert set(checks) == expected
    reference = checks[("onnxruntime", "fp32")]
    assert reference["drop"] == {"tiny": 0.0} and reference["latency_ms"] > 0

    card = json.loads((models_dir / "tiny.json").read_text(encoding="utf-8"))
    assert any("tiny val (4 images" in limit for limit in card["limitations"]), card["limitations"]
    for key in ("name", "version", "created", "sha256", "task", "classes", "input_size",
                "output_layout", "thresholds", "training_data", "training_recipe", "metrics",
                "intended_use", "limitations"):
        assert key in card, key
    assert card["classes"] == ["crop", "weed"] and card["output_layout"] == "end2end"
    # The parity check compared raw outputs even if the 1-epoch model had no confident box ...
    assert 0 <= card["export_parity"]["raw_output_max_relative_gap"] <= 1e-3
    # ... and it refuses an ONNX file that is not this model's export.
    from serving.detector import Detector as ServingDetector
    from training.export import ParityError, check_parity

    with pytest.raises(ParityError, match="raw output differs"):
        check_parity(weights, ServingDetector(shipped_model),
                     [tmp_path / "tiny" / "images" / "val" / "val_0.jpg"])
    assert set(card["metrics"]["tiny"]) >= {"mAP50", "mAP50-95", "precision", "recall", "per_class", "max_f1"}
    # The default confidence is measured (max F1 on val) unless the model found nothing to measure.
    thresholds, tiny = card["thresholds"], card["metrics"]["tiny"]
    assert tiny["conf"] == thresholds["conf"]
    if "conf_source" in thresholds:
        assert "maximum F1" in thresholds["conf_source"]
        assert abs(thresholds["conf"] - tiny["max_f1"]["conf"]) <= 0.005
    else:
        assert thresholds["conf"] == 0.25 and tiny["max_f1"]["conf"] is None
    result = json.loads(report.read_text(encoding="utf-8"))["datasets"]["tiny"]
    assert result["images"] == 4 and result["instances"] == 12
    assert (tmp_path / "eval-plots" / "tiny" / "confusion_matrix.png").is_file()
    assert list((tmp_path / "eval-plots" / "tiny").glob("*PR_curve*.png"))

    from serving.detector import DetectOptions, Detector

    detector = Detector(models_dir / "tiny.onnx")
    image = cv2.imread(str(tmp_path / "tiny" / "images" / "val" / "val_0.jpg"))
    answer = detector.detect(image, DetectOptions(conf=0.0)).to_dict(lanes=3)
    assert answer["image"] == {"width": 160, "height": 160}
    assert answer["detections"], "a model, even an untrained one, returns some boxes at conf 0"
    first = answer["detections"][0]
    assert set(first) == {"class_id", "class_name", "confidence", "box"}
    assert set(first["box"]) == {"x1", "y1", "x2", "y2"}
    assert set(answer["counts"]) == {"crop", "weed"} and len(answer["lanes"]) == 3


def test_eval_without_the_train_extra_says_what_to_install_before_scoring(
        tmp_path: Path, shipped_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from serving import detector as serving_detector
    from training.cli import app

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ultralytics" else real_find_spec(name, *a))
    scored: list[str] = []
    monkeypatch.setattr(serving_detector.Detector, "detect",
                        lambda self, *a, **k: scored.append("image") or pytest.fail("scored"))
    data_yaml = make_dataset(tmp_path / "tiny", train=1, val=1)
    result = CliRunner().invoke(app, ["eval", str(shipped_model), "--data", str(data_yaml)])
    assert result.exit_code != 0 and "pip install -e '.[train]'" in result.output
    assert scored == []


def test_a_new_run_never_reuses_an_earlier_runs_folder(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """train() twice with one name: the second run gets NAME-2, and the first run's folder and
    record stay as they were (Ultralytics' own train is stubbed: only the naming is tested)."""
    from training.offline import import_ultralytics
    from training.train import TrainConfig, fresh_run_name, train

    assert fresh_run_name(tmp_path, "mine") == "mine"
    (tmp_path / "mine").mkdir()
    assert fresh_run_name(tmp_path, "mine") == "mine-2"

    import_ultralytics()
    from ultralytics import YOLO

    asked: list[dict] = []
    monkeypatch.setattr(YOLO, "train", lambda self, **kwargs: asked.append(kwargs))
    data_yaml = make_dataset(tmp_path / "tiny", train=2, val=1, size=64)
    runs = tmp_path / "runs"

    def config() -> TrainConfig:
        return TrainConfig(data=[str(data_yaml)], model="yolov8n.yaml", imgsz=64, epochs=1,
                           project=str(runs), name="mine", plots=False)

    first = train(config())
    record = (runs / "mine" / "weedscan_train.json").read_bytes()
    second = train(config())
    third = train(config())
    assert [p.parent.parent.name for p in (first, second, third)] == ["mine", "mine-2", "mine-3"]
    assert [a["name"] for a in asked] == ["mine", "mine-2", "mine-3"], "Ultralytics writes there too"
    assert (runs / "mine" / "weedscan_train.json").read_bytes() == record, "the first run is untouched"


def test_train_refuses_bad_input_with_one_clear_line(tmp_path: Path) -> None:
    from training.cli import app

    runner = CliRunner()
    missing = runner.invoke(app, ["train", "--data", str(tmp_path / "nowhere.yaml")])
    assert missing.exit_code != 0 and "not found" in missing.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n", encoding="utf-8")
    malformed = runner.invoke(app, ["train", "--data", str(bad)])
    assert malformed.exit_code != 0 and "not valid YAML" in malformed.output
    wrong = tmp_path / "wrong" / "data.yaml"
    wrong.parent.mkdir()
    wrong.write_text(yaml.safe_dump({"train": "images/train", "names": ["a", "b", "c"]}), encoding="utf-8")
    classes = runner.invoke(app, ["train", "--data", str(wrong), "--project", str(tmp_path / "runs")])
    assert classes.exit_code != 0 and "canonical" in classes.output
    assert not list((tmp_path / "runs").glob("*")), "a refused run leaves no folder behind"
    weights = runner.invoke(app, ["export", str(tmp_path / "none.pt")])
    assert weights.exit_code != 0 and "not found" in weights.output
    evaluation = runner.invoke(app, ["eval", str(tmp_path / "none.onnx"), "--data", str(bad)])
    assert evaluation.exit_code != 0 and "not found" in evaluation.output


def test_eval_overwrites_an_earlier_report_only_with_force(tmp_path: Path, shipped_model: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from training import evaluate as evaluate_module
    from training.cli import app

    scored: list[Path] = []
    monkeypatch.setattr(evaluate_module, "evaluate", lambda model, *a, **k: scored.append(model) or
                        eval_report(conf=0.3))
    monkeypatch.chdir(tmp_path)
    data_yaml = make_dataset(tmp_path / "tiny", train=1, val=1)
    runner = CliRunner()
    (tmp_path / "runs" / "eval").mkdir(parents=True)
    for report, given in ((tmp_path / "runs" / "eval" / "weedscan-val.json", []),  # under runs/, as Ultralytics
                          (tmp_path / "mine.json", ["--report", str(tmp_path / "mine.json")])):
        report.write_text("an earlier report", encoding="utf-8")
        refused = runner.invoke(app, ["eval", str(shipped_model), "--data", str(data_yaml), *given])
        assert refused.exit_code == 2, refused.output
        assert f"{report.name} exists" in refused.output and "--force" in refused.output
        assert report.read_text(encoding="utf-8") == "an earlier report" and scored == [], "refused before scoring"
        forced = runner.invoke(app, ["eval", str(shipped_model), "--data", str(data_yaml), *given, "--force"])
        assert forced.exit_code == 0, forced.output
        assert json.loads(report.read_text(encoding="utf-8"))["conf"] == 0.3
        scored.clear()


def test_eval_writes_under_runs_by_default(tmp_path: Path, shipped_model: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The report (and with --plots, the plots) go under runs/eval/, never loose in the current
    folder."""
    from training import evaluate as evaluate_module
    from training.cli import app

    plots: list[Path | None] = []
    monkeypatch.setattr(evaluate_module, "evaluate", lambda model, data, split, plots_dir, **k:
                        plots.append(plots_dir) or eval_report(conf=0.3))
    monkeypatch.chdir(tmp_path)
    data_yaml = make_dataset(tmp_path / "tiny", train=1, val=1)
    before = set(tmp_path.iterdir())
    done = CliRunner().invoke(app, ["eval", str(shipped_model), "--data", str(data_yaml), "--plots"])
    assert done.exit_code == 0, done.output
    assert set(tmp_path.iterdir()) - before == {tmp_path / "runs"}
    assert json.loads((tmp_path / "runs" / "eval" / "weedscan-val.json").read_text(encoding="utf-8"))["conf"] == 0.3
    assert plots == [Path("runs/eval/weedscan-val-plots")]
