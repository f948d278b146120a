"""Starting weights rebuilt from Ultralytics ONNX exports (`weedscan train --weights FILE.onnx`)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.netguard import guarded
from tests.training.test_chain import make_dataset
from training.evaluate import box_iou

PRETRAINED = (Path(__file__).resolve().parents[2] / ".." / "shared" / "pretrained").resolve()
COCO_FILES = ["yolov8n-coco-int8.onnx", "yolo11n-coco-int8.onnx", "yolo26n-coco-int8.onnx"]
BOX_MIN_CONF = 0.5


def ultralytics_assets() -> Path:
    from training.offline import import_ultralytics

    return Path(import_ultralytics().__file__).parent / "assets"


def model_input(image: np.ndarray, size: int) -> np.ndarray:
    from serving.preprocess import letterbox

    boxed, _ = letterbox(image, size)
    return np.ascontiguousarray(boxed[:, :, ::-1].transpose(2, 0, 1)[None], np.float32) / 255.0


def confident_boxes(output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(boxes xyxy, classes) above BOX_MIN_CONF from a raw (1, 4+nc, N) or end-to-end (1, K, 6) head."""
    if output.shape[-1] == 6:
        rows = output[0][output[0, :, 4] >= BOX_MIN_CONF]
        return rows[:, :4], rows[:, 5].astype(int)
    preds = output[0].T
    scores, classes = preds[:, 4:].max(1), preds[:, 4:].argmax(1)
    keep = scores >= BOX_MIN_CONF
    xywh, scores, classes = preds[keep, :4], scores[keep], classes[keep]
    corner = np.column_stack([xywh[:, 0] - xywh[:, 2] / 2, xywh[:, 1] - xywh[:, 3] / 2, xywh[:, 2], xywh[:, 3]])
    kept = cv2.dnn.NMSBoxesBatched(corner.tolist(), scores.tolist(), classes.tolist(), BOX_MIN_CONF, 0.7)
    kept = np.asarray(kept, int).reshape(-1)
    xyxy = np.column_stack([corner[:, 0], corner[:, 1], corner[:, 0] + corner[:, 2], corner[:, 1] + corner[:, 3]])
    return xyxy[kept], classes[kept]


def torch_output(model, x: np.ndarray, end2end: bool) -> np.ndarray:  # noqa: ANN001
    import torch

    model.eval()
    if hasattr(model.model[-1], "end2end"):
        model.model[-1].end2end = end2end
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    return (out[0] if isinstance(out, (list, tuple)) else out).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("file_name", COCO_FILES)
def test_a_rebuilt_coco_model_finds_the_onnx_files_boxes(file_name: str) -> None:
    import onnxruntime as ort

    from training.pretrained import rebuild_from_onnx

    path = PRETRAINED / file_name
    if not path.is_file():
        pytest.skip(f"{path} not present (../shared/pretrained)")
    assets = ultralytics_assets()
    model, origin = rebuild_from_onnx(path, [assets / "bus.jpg", assets / "zidane.jpg"])
    assert origin.architecture == file_name.split("-")[0] + ".yaml"
    assert origin.licence.startswith("AGPL-3.0") and "github.com" in origin.source
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    size = session.get_inputs()[0].shape[2]
    compared = 0
    for image_name in ("bus.jpg", "zidane.jpg"):
        x = model_input(cv2.imread(str(assets / image_name)), size)
        reference = session.run(None, {session.get_inputs()[0].name: x})[0]
        ref_boxes, ref_classes = confident_boxes(reference)
        boxes, classes = confident_boxes(torch_output(model, x, reference.shape[-1] == 6))
        assert len(ref_boxes) >= 2, "the COCO model should see people and a bus"
        # Each confident box of the ONNX file has a box of its class in the rebuilt model, and back.
        for one, one_cls, other, other_cls in ((ref_boxes, ref_classes, boxes, classes),
                                               (boxes, classes, ref_boxes, ref_classes)):
            for box, cls in zip(one, one_cls):
                same = other[other_cls == cls]
                assert len(same) and box_iou(box[None], same).max() >= 0.85, (image_name, box, cls)
                compared += 1
    assert compared >= 8


@pytest.mark.slow
def test_the_shipped_model_is_rebuilt_with_its_wide_class_branch(shared_data: Path,
                                                                 shipped_model: Path) -> None:
    """A COCO fine-tune keeps the 80-wide class branch with 2 classes: training can restart from it."""
    import onnxruntime as ort

    from training.pretrained import rebuild_from_onnx

    images = sorted((shared_data / "sesame" / "images" / "val").iterdir())[:6]
    model, origin = rebuild_from_onnx(shipped_model, images[:4])
    head = model.model[-1]
    assert model.names == {0: "crop", 1: "weed"} and head.nc == 2
    assert origin.architecture == "yolov8n.yaml"
    session = ort.InferenceSession(str(shipped_model), providers=["CPUExecutionProvider"])
    size = json.loads(shipped_model.with_suffix(".json").read_text(encoding="utf-8"))["input_size"]
    compared = 0
    for path in images:
        x = model_input(cv2.imread(str(path)), size)
        reference = session.run(None, {session.get_inputs()[0].name: x})[0]
        ours = torch_output(model, x, end2end=False)
        assert ours.shape == reference.shape
        ref_boxes, ref_classes = confident_boxes(reference)
        boxes, classes = confident_boxes(ours)
        assert len(boxes) == len(ref_boxes), path.name
        for box, cls in zip(ref_boxes, ref_classes):
            assert box_iou(box[None], boxes[classes == cls]).max() >= 0.9, (path.name, box)
            compared += 1
    assert compared >= 3, "the shipped model should find plants on sesame val"


@pytest.mark.slow
def test_rebuilt_weights_load_into_a_two_class_model() -> None:
    from ultralytics.nn.tasks import DetectionModel

    from training.pretrained import rebuild_from_onnx

    path = PRETRAINED / "yolov8n-coco-int8.onnx"
    if not path.is_file():
        pytest.skip(f"{path} not present (../shared/pretrained)")
    assets = ultralytics_assets()
    coco, _ = rebuild_from_onnx(path, [assets / "bus.jpg"])
    two = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
    two.load(coco, verbose=False)
    source, target = coco.state_dict(), two.state_dict()
    class_outputs = {k for k in target if k.startswith("model.22.cv3.") and ".2." in k}
    assert class_outputs, "the class output convs are the only layers whose shape depends on nc"
    for key, value in target.items():
        if key in class_outputs or key.endswith("num_batches_tracked"):
            continue
        assert value.shape == source[key].shape and bool((value == source[key]).all()), key


def export_fresh_model(tmp_path: Path, int8: bool) -> Path:
    """An Ultralytics ONNX export of a freshly initialised YOLOv8n with non-trivial BatchNorm
    statistics (so that folding them matters), optionally int8-quantized like the COCO files."""
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    model.names = {0: "crop", 1: "weed"}
    checkpoint = tmp_path / "fresh.pt"
    torch.save({"model": model, "train_args": {}}, checkpoint)
    exported = Path(YOLO(str(checkpoint)).export(format="onnx", imgsz=160, simplify=False))
    if not int8:
        return exported
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = tmp_path / "fresh-int8.onnx"
    quantize_dynamic(str(exported), str(quantized), weight_type=QuantType.QInt8)
    return quantized


@pytest.mark.slow
@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_an_export_is_rebuilt_into_the_model_it_came_from(tmp_path: Path, int8: bool) -> None:
    import onnxruntime as ort

    from training.offline import import_ultralytics
    from training.pretrained import onnx_tensors, rebuild_from_onnx

    import_ultralytics()
    fp32 = export_fresh_model(tmp_path, int8=False)
    path = export_fresh_model(tmp_path, int8=True) if int8 else fp32
    if int8:
        assert any(v.dtype.kind == "f" for v in onnx_tensors(path).values())
    images = [ultralytics_assets() / "bus.jpg", ultralytics_assets() / "zidane.jpg"]
    model, origin = rebuild_from_onnx(path, images)
    assert origin.architecture == "yolov8n.yaml" and origin.calibration_images == 2
    session = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    x = model_input(cv2.imread(str(images[0])), 160)
    reference = session.run(None, {session.get_inputs()[0].name: x})[0]
    ours = torch_output(model, x, end2end=False)
    if int8:  # weights dequantized from 8 bits: close, not equal
        assert np.corrcoef(reference.ravel(), ours.ravel())[0, 1] > 0.99
    else:
        np.testing.assert_allclose(ours, reference, rtol=1e-3, atol=1e-2)
    # In train mode BatchNorm uses the batch's statistics: calibrated, it still computes
    # (nearly) the exported function, so fine-tuning starts from the exported features.
    import torch

    model.train()
    with torch.no_grad():
        batch = torch.from_numpy(np.concatenate([model_input(cv2.imread(str(p)), 160) for p in images]))
        features = model.model[0](batch)
        model.eval()
        expected = model.model[0](batch)
    assert float((features - expected).abs().mean()) < 0.05 * float(expected.abs().mean())


@pytest.mark.slow
def test_train_starts_from_an_onnx_export_with_the_network_blocked(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from training.cli import app
    from training.offline import import_ultralytics

    monkeypatch.setenv("WEEDSCAN_CACHE", str(tmp_path / "cache"))
    import_ultralytics()
    start = export_fresh_model(tmp_path, int8=True)
    data_yaml = make_dataset(tmp_path / "tiny")
    earlier = tmp_path / "runs" / "from-onnx"  # an earlier run's folder: left alone
    earlier.mkdir(parents=True)
    (earlier / "results.csv").write_text("earlier run\n", encoding="utf-8")
    runner = CliRunner()
    with guarded(allow_loopback=False) as attempts:
        trained = runner.invoke(app, ["train", "--data", str(data_yaml), "--model", "yolov8n.yaml",
                                      "--weights", str(start), "--imgsz", "96", "--epochs", "1",
                                      "--batch", "4", "--project", str(tmp_path / "runs"),
                                      "--name", "from-onnx"])
        assert trained.exit_code == 0, trained.output
        weights = tmp_path / "runs" / "from-onnx-2" / "weights" / "best.pt"
    assert (earlier / "results.csv").read_text(encoding="utf-8") == "earlier run\n"
    assert len(list(earlier.iterdir())) == 1
    assert attempts == [], f"network attempts: {attempts}"
    assert weights.is_file()
    assert (weights.parent.parent / "results.png").is_file(), "Ultralytics' plots, on by default"
    from serving.model_card import sha256_of
    from training.export import OnnxInputs, build_card, run_record_for

    record = run_record_for(weights)
    assert record.pretrained is not None and record.pretrained["sha256"] == sha256_of(start)
    assert record.pretrained["format"] == "onnx" and record.pretrained["file"] == start.name
    card = build_card("tiny", "1", start, OnnxInputs(classes=["crop", "weed"], input_size=96,
                                                     layout="raw"), record, {}, None, None)
    assert card.training_recipe["pretrained_start"]["sha256"] == sha256_of(start)
    assert start.name in card.licence
