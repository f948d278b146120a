import numpy as np
import pytest

from serving.postprocess import END_TO_END, RAW, decode_output, infer_layout
from serving.preprocess import letterbox, to_blob


def test_layout_is_inferred_from_the_output_shape() -> None:
    assert infer_layout([1, 6, 2100], 2) == RAW
    assert infer_layout([1, 300, 6], 2) == END_TO_END
    assert infer_layout(["batch", 84, "anchors"], 80) == RAW


def _raw_output(boxes_cxcywh: list[list[float]], scores: list[list[float]]) -> np.ndarray:
    return np.concatenate([np.array(boxes_cxcywh, np.float32),
                           np.array(scores, np.float32)], 1).T  # (4 + nc, N)


def test_raw_layout_thresholds_nms_and_classes() -> None:
    out = _raw_output([[50, 50, 20, 20], [51, 50, 20, 20], [200, 200, 10, 10], [300, 300, 4, 4]],
                      [[0.1, 0.9], [0.1, 0.8], [0.7, 0.2], [0.05, 0.1]])
    dets = decode_output(out, RAW, conf=0.25, iou=0.5, max_det=100)
    assert dets.class_ids.tolist() == [1, 0]  # duplicate suppressed, low score dropped
    assert dets.boxes[0].tolist() == pytest.approx([40, 40, 60, 60])
    only_crop = decode_output(out, RAW, conf=0.25, iou=0.5, max_det=100, classes=[0])
    assert only_crop.class_ids.tolist() == [0]


def test_end_to_end_layout() -> None:
    out = np.array([[1, 2, 3, 4, 0.9, 1], [5, 6, 7, 8, 0.3, 0], [0, 0, 0, 0, 0.0, 0]], np.float32)
    dets = decode_output(out, END_TO_END, conf=0.25, iou=0.7, max_det=300)
    assert dets.scores.tolist() == pytest.approx([0.9, 0.3])
    assert decode_output(out, END_TO_END, conf=0.5, iou=0.7, max_det=300).class_ids.tolist() == [1]
    assert len(decode_output(out, END_TO_END, conf=0.1, iou=0.7, max_det=1)) == 1


def test_letterbox_round_trip() -> None:
    image = np.zeros((966, 1296, 3), np.uint8)
    padded, lb = letterbox(image, 416)
    assert padded.shape == (416, 416, 3)
    # a box in the image maps to the model input and back
    box = np.array([[100, 200, 300, 400]], np.float32)
    model_box = box * lb.ratio + np.array([lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y])
    assert lb.undo(model_box).tolist()[0] == pytest.approx(box[0].tolist(), abs=1e-3)
    blob = to_blob([padded, padded])
    assert blob.shape == (2, 3, 416, 416) and blob.dtype == np.float32 and blob.max() <= 1.0


def test_letterbox_to_the_stride_pads_less() -> None:
    image = np.zeros((966, 1296, 3), np.uint8)
    padded, lb = letterbox(image, 320, stride=32)
    assert padded.shape == (256, 320, 3)  # 240 rows of image, padded to the next multiple of 32
    box = np.array([[100, 200, 300, 400]], np.float32)
    model_box = box * lb.ratio + np.array([lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y])
    assert lb.undo(model_box).tolist()[0] == pytest.approx(box[0].tolist(), abs=1e-3)


@pytest.mark.parametrize(("shape", "stride", "expected"), [
    ((512, 512), None, (416, 416)), ((512, 512), 32, (416, 416)),
    ((966, 1296), None, (416, 416)), ((966, 1296), 32, (320, 416)),  # 384 x 286 inside, + 16 each side
])
def test_letterbox_with_a_border_keeps_a_grey_frame_round_the_image(
        shape: tuple[int, int], stride: int | None, expected: tuple[int, int]) -> None:
    image = np.zeros((*shape, 3), np.uint8)
    padded, lb = letterbox(image, 416, stride=stride, border=16)
    assert padded.shape[:2] == expected
    assert lb.ratio == pytest.approx(384 / max(shape))  # fitted inside 416 - 2 x 16
    grey = np.all(padded == 114, axis=2)
    assert grey[:16].all() and grey[-16:].all() and grey[:, :16].all() and grey[:, -16:].all()
    content = ~grey
    rows, cols = np.flatnonzero(content.any(1)), np.flatnonzero(content.any(0))
    assert (cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1) == (round(shape[1] * lb.ratio), round(shape[0] * lb.ratio))
    assert (lb.pad_x, lb.pad_y) == (cols[0], rows[0])
    box = np.array([[100, 200, 300, 400]], np.float32)
    model_box = box * lb.ratio + np.array([lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y])
    assert lb.undo(model_box).tolist()[0] == pytest.approx(box[0].tolist(), abs=1e-3)


def test_letterbox_with_no_border_pads_as_before() -> None:
    image = np.zeros((966, 1296, 3), np.uint8)
    for size, stride, expected in [(416, 32, (320, 416)), (320, 32, (256, 320)), (416, None, (416, 416))]:
        assert letterbox(image, size, stride=stride, border=0)[0].shape[:2] == expected
