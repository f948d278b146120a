"""Letterboxing to the model input, the way Ultralytics does it (so boxes agree to the pixel)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How an image was resized and padded: undo() maps model boxes back to the image."""

    ratio: float
    pad_x: float
    pad_y: float
    width: int
    height: int

    def undo(self, boxes: np.ndarray) -> np.ndarray:
        out = boxes.astype(np.float32, copy=True)
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.ratio
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.ratio
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.height)
        return out


def letterbox(image: np.ndarray, size: int, stride: int | None = None,
              border: int = 0) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio and pad, centred, grey 114: to size x size, or with
    `stride` only up to the next multiple of it (a 4:3 frame at 320 becomes 320 x 256, 20% less
    work; models exported with dynamic height and width accept that). `border` keeps a grey
    frame of at least that many pixels on every side: the image is fitted into size - 2 * border."""
    height, width = image.shape[:2]
    inner = size - 2 * border
    ratio = min(inner / height, inner / width)
    new_w, new_h = max(1, round(width * ratio)), max(1, round(height * ratio))  # a 1000x1 image: 1 px, not 0
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if stride:  # each side: the smallest multiple of the stride holding the image and its frame
        dw, dh = (-(side + 2 * border) % stride + 2 * border for side in (new_w, new_h))
    else:
        dw, dh = size - new_w, size - new_h
    dw, dh = dw / 2, dh / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                value=(PAD_VALUE, PAD_VALUE, PAD_VALUE))
    return padded, Letterbox(ratio, float(left), float(top), width, height)


def to_blob(images: list[np.ndarray]) -> np.ndarray:
    """BGR HWC uint8 images -> one RGB NCHW float32 batch in [0, 1]."""
    batch = np.stack(images)[..., ::-1].transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch, dtype=np.float32) / 255.0
