"""`weedscan eval` (the ONNX model through the serving detector) agrees with Ultralytics' `val`
on the same ONNX file within 0.04 mAP50 (see below), on the real val splits."""

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
    # `yolo val` scores higher than the served detector's answer: sesame 0.887 vs 0.871 on the
    # 64-epoch model, 0.887 vs 0.850 on the 94-epoch one. Measured one cause at a time
    # (2026-12-04): its multi-label NMS (a box kept once per class above conf) is 0.004-0.005
    # of it, its INTER_AREA shrink 0.001, its IoU-ordered matching (ours is COCO's confidence
    # order) 0.000; the rest is not traced yet. Ours is the single-label answer users get.
    assert abs(ours["mAP50"] - theirs["mAP50"]) <= 0.04, (ours["mAP50"], theirs)
    assert abs(ours["mAP50-95"] - theirs["mAP50-95"]) <= 0.05, (ours["mAP50-95"], theirs)
