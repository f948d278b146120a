"""Drawing detections on the image, for /v1/annotate and `weedscan detect --save-dir`."""

from __future__ import annotations

import cv2
import numpy as np

from serving.result import DetectionResult

# BGR, as the page draws them (serving/static/app.js): every box a coloured line on a dark halo,
# so it reads on green leaves and pale soil alike; crop white (green vanished on the crop's own
# leaves), weed magenta, green-on-brown `plant` orange, other classes from a fixed palette.
CLASS_COLOURS = {"crop": (255, 255, 255), "weed": (200, 30, 230), "plant": (0, 165, 255)}
HALO = (13, 26, 13)
_PALETTE = [(0, 165, 255), (255, 144, 30), (0, 215, 255), (180, 105, 255)]


def colour_for(name: str, class_id: int) -> tuple[int, int, int]:
    return CLASS_COLOURS.get(name, _PALETTE[class_id % len(_PALETTE)])


def label_text_colour(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Dark text on light label chips (crop white, plant orange), white on the others."""
    b, g, r = (c / 255 for c in colour)
    luminance = 0.2126 * r ** 2.2 + 0.7152 * g ** 2.2 + 0.0722 * b ** 2.2
    return (17, 17, 17) if luminance > 0.3 else (255, 255, 255)


def draw(image: np.ndarray, result: DetectionResult) -> np.ndarray:
    canvas = image.copy()
    scale = max(canvas.shape[:2]) / 1000
    thickness = max(1, round(2 * scale))
    font_scale = max(0.4, 0.5 * scale)
    dets = result.detections
    for box, score, class_id in zip(dets.boxes, dets.scores, dets.class_ids):
        name = result.class_names[int(class_id)]
        colour = colour_for(name, int(class_id))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), HALO, thickness + 2 * max(1, thickness // 2))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        label = f"{name} {score:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        top = max(y1 - th - base, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + tw, top + th + base), colour, -1)
        cv2.putText(canvas, label, (x1, top + th), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    label_text_colour(colour), max(1, thickness // 2), cv2.LINE_AA)
    return canvas


# JPEG stores each side in 16 bits and libjpeg refuses sides over 65,500 px.
JPEG_MAX_SIDE = 65_500


def output_format(image: np.ndarray, fmt: str = "jpeg") -> str:
    """The format an annotated image is sent in: the one asked for, or PNG when JPEG cannot
    hold the image (a side over JPEG_MAX_SIDE)."""
    return "png" if fmt == "jpeg" and max(image.shape[:2]) > JPEG_MAX_SIDE else fmt


# How cv2 writes each format: its extension and parameters.
ENCODINGS: dict[str, tuple[str, list[int]]] = {
    "jpeg": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90]), "png": (".png", []), "webp": (".webp", []),
    "bmp": (".bmp", []), "tiff": (".tif", [])}


def encode(image: np.ndarray, fmt: str = "jpeg") -> bytes:
    """The image in one of ENCODINGS' formats (the API's /v1/annotate answers jpeg or png;
    `weedscan detect --save-dir` keeps each input's format)."""
    ext, params = ENCODINGS[fmt]
    ok, buffer = cv2.imencode(ext, image, params)
    if not ok:
        raise RuntimeError(f"could not encode the annotated image as {fmt}")
    return buffer.tobytes()
