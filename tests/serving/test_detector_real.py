"""The detector on real field photos from ../shared (skipped where they are absent)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from serving.config import DEFAULT_MAX_PIXELS
from serving.detector import DetectOptions, Detector
from serving.imaging import decode_image
from tests import images
from training.evaluate import box_iou

MAX_PIXELS = DEFAULT_MAX_PIXELS


def val_images(shared_data: Path, dataset: str, pattern: str) -> list[Path]:
    return sorted((shared_data / dataset / "images" / "val").glob(pattern))


def first_with_confident_boxes(detector: Detector, paths: list[Path], conf: float = 0.5) -> Path:
    for path in paths:
        if len(detector.detect(cv2.imread(str(path)), DetectOptions(conf=conf)).detections):
            return path
    pytest.fail(f"the model finds no box with confidence >= {conf} on {len(paths)} val images")


def test_boxes_match_ultralytics_onnx_predict(shipped_model: Path, shared_data: Path) -> None:
    """With no border (Ultralytics' predict fills the input with the image), the same boxes as
    Ultralytics' own ONNX pipeline: within 1 px at the model's input scale (Ultralytics rounds
    the letterbox padding differently when mapping boxes back, a sub-pixel shift that a 4x
    downscale makes ~2 px in a CWFID frame) and 0.01 confidence."""
    from training.offline import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    # ONNX Runtime fp32, as Ultralytics runs the .onnx (auto may run the card's int8 variant)
    detector = Detector(shipped_model, threads=2, input_border=0, engine="onnxruntime", precision="fp32")
    yolo = YOLO(str(shipped_model), task="detect")
    paths = val_images(shared_data, "sesame", "*.jpeg")[:8] + val_images(shared_data, "cwfid", "*.png")[:3]
    compared = 0
    for path in paths:
        image = cv2.imread(str(path))
        ref = yolo.predict(image, imgsz=detector.input_size, conf=0.25, iou=0.7, verbose=False)[0].boxes
        ours = detector.detect(image, DetectOptions(conf=0.25, iou=0.7, tile="off")).detections
        tolerance = max(image.shape[:2]) / detector.input_size  # 1 px of the model input
        assert len(ours) == len(ref), f"{path.name}: {len(ours)} boxes vs Ultralytics' {len(ref)}"
        for box, conf, cls in zip(ref.xyxy.numpy(), ref.conf.numpy(), ref.cls.numpy().astype(int)):
            same_class = np.flatnonzero(ours.class_ids == cls)
            assert len(same_class), f"{path.name}: no {cls} box"
            best = same_class[np.abs(ours.boxes[same_class] - box).max(1).argmin()]
            assert np.abs(ours.boxes[best] - box).max() <= tolerance, (path.name, ours.boxes[best], box)
            assert abs(float(ours.scores[best]) - float(conf)) <= 0.01
            compared += 1
    assert compared > 0, "no boxes to compare: the model found nothing on 11 val images"


def test_the_cards_border_moves_no_box_off_its_plant(detector: Detector, shipped_model: Path,
                                                     shared_data: Path) -> None:
    """The grey frame shrinks the image inside the input; boxes still come back on the same plants
    in the photo's pixels: each confident box away from the edges has a twin without the border."""
    assert detector.input_border > 0, "the shipped card keeps a border round each image"
    filled = Detector(shipped_model, threads=2, input_border=0, engine="onnxruntime", precision="fp32")
    compared = 0
    for path in val_images(shared_data, "sesame", "*.jpeg")[:6] + val_images(shared_data, "cwfid", "*.png")[:2]:
        image = cv2.imread(str(path))
        height, width = image.shape[:2]
        framed = detector.detect(image, DetectOptions(conf=0.5, tile="off")).detections
        plain = filled.detect(image, DetectOptions(conf=0.2, tile="off")).detections
        for box, cls in zip(framed.boxes, framed.class_ids):
            if box[0] < 0.05 * width or box[2] > 0.95 * width or box[1] < 0.05 * height or box[3] > 0.95 * height:
                continue
            same = plain.boxes[plain.class_ids == cls]
            assert len(same) and box_iou(box[None], same).max() >= 0.8, (path.name, box)
            compared += 1
    assert compared >= 3, f"only {compared} confident boxes to compare"


def test_a_border_that_leaves_no_room_is_refused(shipped_model: Path) -> None:
    from serving.errors import ModelCardError

    with pytest.raises(ModelCardError, match="leaves no room"):
        Detector(shipped_model, threads=1, input_border=208)


@pytest.mark.parametrize("orientation", [6, 3, 8])
def test_exif_rotated_photo_gives_boxes_on_the_same_plants(detector: Detector, shared_data: Path,
                                                          orientation: int) -> None:
    path = first_with_confident_boxes(detector, val_images(shared_data, "sesame", "*.jpeg"))
    upright = cv2.imread(str(path))
    reference = detector.detect(decode_image(images.jpeg_with_orientation(upright, 1), MAX_PIXELS),
                                DetectOptions(conf=0.25))
    rotated = decode_image(images.jpeg_with_orientation(upright, orientation), MAX_PIXELS)
    assert rotated.shape == upright.shape
    result = detector.detect(rotated, DetectOptions(conf=0.25))
    confident = reference.detections.with_min_score(0.5)
    assert len(confident)
    for box, cls in zip(confident.boxes, confident.class_ids):
        same = result.detections.boxes[result.detections.class_ids == cls]
        assert len(same) and box_iou(box[None], same).max() > 0.7, (path.name, orientation, box)


def test_a_small_weed_in_a_drone_sized_image_needs_tiling(detector: Detector, shared_data: Path) -> None:
    """A weed pasted into a 5000x4000 field is found with tiling and lost without it."""
    label_dir = shared_data / "sesame" / "labels" / "val"
    for path in val_images(shared_data, "sesame", "*.jpeg"):
        rows = [line.split() for line in (label_dir / f"{path.stem}.txt").read_text(encoding="utf-8").splitlines()]
        weeds = [r for r in rows if r[0] == "1"]
        if len(rows) == 1 and weeds and float(weeds[0][3]) > 0.3:
            photo = cv2.imread(str(path))
            if len(detector.detect(photo, DetectOptions(conf=0.5, classes=(1,))).detections):
                break
    else:
        pytest.fail("no sesame val photo with one large weed the model finds")
    canvas = np.empty((4000, 5000, 3), np.uint8)
    canvas[:] = np.median(photo.reshape(-1, 3), axis=0)
    patch = cv2.resize(photo, (320, 320), interpolation=cv2.INTER_AREA)
    x0, y0 = 2900, 1700
    canvas[y0:y0 + 320, x0:x0 + 320] = patch
    cx, cy, w, h = (float(v) * 320 for v in weeds[0][1:5])  # the labelled weed, in the canvas
    region = np.array([[x0 + cx - w / 2, y0 + cy - h / 2, x0 + cx + w / 2, y0 + cy + h / 2]], np.float32)

    def weed_found(tile: str) -> bool:
        dets = detector.detect(canvas, DetectOptions(conf=0.25, classes=(1,), tile=tile)).detections
        return bool(len(dets)) and bool((box_iou(region, dets.boxes) > 0.5).any())

    assert weed_found("on"), "tiling should find the weed"
    assert not weed_found("off"), "without tiling the weed is ~20 px and should be lost"
    assert weed_found("auto"), "auto tiles a 5000x4000 image"
