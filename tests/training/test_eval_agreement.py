"""`weedscan eval` (the ONNX model through the serving detector) agrees with Ultralytics' `val`
on the same ONNX file within 0.035 mAP50 (see below), on the real val splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.agreement import ultralytics_val
from training.evaluate import evaluate


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["sesame", "cwfid"])
def test_eval_agrees_with_yolo_val(shipped_model: Path, shared_data: Path, dataset: str) -> None:
    data_yaml = shared_data / dataset / "data.yaml"
    ours = evaluate(shipped_model, [data_yaml])["datasets"][dataset]
    from serving.detector import Detector

    theirs = ultralytics_val(shipped_model, data_yaml, Detector(shipped_model).input_size)
    # Ultralytics' val loader shrinks images with INTER_AREA, predict (and serving) with
    # INTER_LINEAR: boxes move by a pixel or so, which shows in the strict IoU thresholds, and
    # the COCO-started yolov8n scores 0.028 mAP50 higher on sesame with the smoother INTER_AREA
    # input (0.905 vs 0.877): a preprocessing difference, not a metric one.
    assert abs(ours["mAP50"] - theirs["mAP50"]) <= 0.035, (ours["mAP50"], theirs)
    assert abs(ours["mAP50-95"] - theirs["mAP50-95"]) <= 0.05, (ours["mAP50-95"], theirs)
