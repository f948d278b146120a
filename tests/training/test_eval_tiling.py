"""`weedscan eval` finds the boxes of a big photo as the server does (tile `auto`), unless
`--tile` says otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from serving.detector import DetectOptions, Detector
from tests import images
from tests.training.reports import eval_report
from training.evaluate import EVAL_CONF, EVAL_IOU, EVAL_MAX_DET, EvalReport, collect
from training.trainset import YoloDataset

PHONE = (3264, 2448)  # a phone photo's pixels: the server tiles it under tile=auto


def one_photo_dataset(root: Path, image: np.ndarray) -> YoloDataset:
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "val" / "photo.png"), image)
    (root / "labels" / "val" / "photo.txt").write_text("1 0.5 0.5 0.1 0.1\n", encoding="utf-8")
    data_yaml = root / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"val": "images/val", "names": ["crop", "weed"]}), encoding="utf-8")
    return YoloDataset.from_yaml(data_yaml)


def test_eval_scores_a_big_photo_with_the_boxes_the_server_answers(detector: Detector,
                                                                  tmp_path: Path) -> None:
    photo = cv2.resize(images.field_like(816, 612, seed=4), PHONE, interpolation=cv2.INTER_LINEAR)
    dataset = one_photo_dataset(tmp_path / "phone", photo)
    assert detector.tiles(*PHONE, DetectOptions())  # the server's default tiles it

    scored = collect(detector, dataset, "val")[0]
    served = detector.detect(photo, DetectOptions(conf=EVAL_CONF, iou=EVAL_IOU,
                                                  max_det=EVAL_MAX_DET)).detections
    untiled = detector.detect(photo, DetectOptions(conf=EVAL_CONF, iou=EVAL_IOU,
                                                   max_det=EVAL_MAX_DET, tile="off")).detections
    assert len(scored.pred_boxes) == len(served) > 0
    np.testing.assert_allclose(scored.pred_boxes, served.boxes, atol=1e-3)
    np.testing.assert_array_equal(scored.pred_cls, served.class_ids)
    assert len(untiled) != len(served) or not np.allclose(untiled.boxes, served.boxes), \
        "tiling must change this photo's boxes, or the test proves nothing"

    off = collect(detector, dataset, "val", tile="off")[0]  # --tile off: the whole photo at once
    np.testing.assert_allclose(off.pred_boxes, untiled.boxes, atol=1e-3)


@pytest.mark.parametrize("given, passed", [([], "auto"), (["--tile", "off"], "off"),
                                           (["--tile", "on"], "on")])
def test_eval_command_passes_tile(given: list[str], passed: str, tmp_path: Path, shipped_model: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import training.evaluate
    from training.cli import app

    calls: list[dict[str, Any]] = []

    def fake_evaluate(*args: Any, **kwargs: Any) -> EvalReport:
        calls.append(kwargs)
        return eval_report()

    monkeypatch.setattr(training.evaluate, "evaluate", fake_evaluate)
    report = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["eval", str(shipped_model), "--data", str(tmp_path),
                                      "--report", str(report), *given])
    assert result.exit_code == 0, result.output
    assert [call["tile"] for call in calls] == [passed]


def test_eval_command_refuses_an_unknown_tile_mode(tmp_path: Path, shipped_model: Path) -> None:
    from training.cli import app

    result = CliRunner().invoke(app, ["eval", str(shipped_model), "--data", str(tmp_path),
                                      "--report", str(tmp_path / "r.json"), "--tile", "maybe"])
    assert result.exit_code == 2 and "--tile: auto, on or off" in result.output
