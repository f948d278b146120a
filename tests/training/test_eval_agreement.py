"""`weedscan eval` (the ONNX model through the serving detector) agrees with Ultralytics' `val`
on the same ONNX file within 0.02 mAP50 (see below), on real val photos: all of CWFID's, every
third of sesame's (in name order, so the same photos each run). The whole splits are
benchmarks/check_eval_agreement.py's; here the agreement is what is checked, per photo scored the
same way on both sides, so a fixed part of the bigger split checks it as well."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.agreement import ultralytics_val
from training.evaluate import evaluate

EVERY_NTH = {"sesame": 3, "cwfid": 1}


def val_sample(dataset: Path, every_nth: int, root: Path) -> Path:
    """A dataset folder of links to every `every_nth` val photo (and its labels) of `dataset`,
    with the same data.yaml; its train split is one linked photo, which loaders require."""
    for split in ("train", "val"):
        for kind in ("images", "labels"):
            (root / kind / split).mkdir(parents=True)
    photos = sorted((dataset / "images" / "val").iterdir())[::every_nth]
    first_train = sorted((dataset / "images" / "train").iterdir())[0]
    for split, chosen in (("val", photos), ("train", [first_train])):
        for photo in chosen:
            (root / "images" / split / photo.name).symlink_to(photo)
            label = dataset / "labels" / split / f"{photo.stem}.txt"
            if label.is_file():
                (root / "labels" / split / label.name).symlink_to(label)
    (root / "data.yaml").write_text((dataset / "data.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    return root / "data.yaml"


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["sesame", "cwfid"])
def test_eval_agrees_with_yolo_val(shipped_model: Path, shared_data: Path, dataset: str, tmp_path: Path) -> None:
    data_yaml = val_sample(shared_data / dataset, EVERY_NTH[dataset], tmp_path / dataset)
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
