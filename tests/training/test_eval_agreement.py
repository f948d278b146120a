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
    # The file itself on both sides: ONNX Runtime fp32, not the int8 variant `auto` would serve.
    ours = evaluate(shipped_model, [data_yaml], engine="onnxruntime", precision="fp32").card_metrics()[dataset]
    from serving.detector import Detector

    theirs = ultralytics_val(shipped_model, data_yaml, Detector(shipped_model).input_size)
    # Ultralytics' validator letterboxes each val image into rect batches with half a stride of
    # grey round it; the served detector keeps the card's border (16 px) round the image the same
    # way. Without that border, served answers scored 0.850 on sesame against yolo val's 0.887:
    # the model puts boxes on the part-plants at a photo's edge, which sesame's labels leave out.
    # What is left: its multi-label NMS (a box kept once per class above conf, 0.004-0.005) and
    # its INTER_AREA shrink (0.001). Ours is the single-label answer users get.
    assert abs(ours["mAP50"] - theirs["mAP50"]) <= 0.02, (ours["mAP50"], theirs)
    assert abs(ours["mAP50-95"] - theirs["mAP50-95"]) <= 0.03, (ours["mAP50-95"], theirs)
