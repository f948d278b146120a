"""A photo's boxes: the detect answer's box form in upright image pixels, and YOLO label lines.

A label is `{"class_name": "crop"|"weed", "box": {"x1", "y1", "x2", "y2"}}`; other keys of a
detection (class_id, confidence) are ignored, so a detect answer's boxes can be saved as they are.
A box may overstep the image by up to EDGE_TOLERANCE_PX (a drag that ends on the border) and is
clipped; one further out, or with no area, is refused (422) rather than guessed at.
"""

from __future__ import annotations

import json
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from serving.answer import Box
from serving.fields.errors import InvalidLabels

CLASSES: tuple[str, ...] = ("crop", "weed")  # YOLO class ids 0, 1 (the canonical classes)
ClassName = Literal["crop", "weed"]
EDGE_TOLERANCE_PX = 1.0
MAX_BOXES = 2000
MAX_LABELS_BYTES = 1024 * 1024


class LabelBox(BaseModel):
    model_config = ConfigDict(extra="ignore")

    class_name: ClassName
    box: Box


_LABELS = TypeAdapter(list[LabelBox])


def _first_problem(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    if err.get("type") == "literal_error":
        return f"{where}: unknown class {err.get('input')!r}; the classes are {', '.join(CLASSES)}"
    return f"{where}: {err.get('msg')}" if where else str(err.get("msg"))


def parse_labels(raw: str | bytes | list[object]) -> list[LabelBox]:
    """The labels of a request: a JSON list (text) or an already parsed one; 422 naming the
    first problem."""
    if isinstance(raw, (str, bytes)):
        if len(raw) > MAX_LABELS_BYTES:
            raise InvalidLabels(f"the labels are over {MAX_LABELS_BYTES} bytes")
        try:
            raw = json.loads(raw or "[]")
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidLabels(f"labels: not JSON ({exc})") from None
    if not isinstance(raw, list):
        raise InvalidLabels("labels: expected a JSON list of {class_name, box} objects")
    if len(raw) > MAX_BOXES:
        raise InvalidLabels(f"labels: {len(raw)} boxes; at most {MAX_BOXES}")
    try:
        return _LABELS.validate_python(raw)
    except ValidationError as exc:
        raise InvalidLabels(f"labels: {_first_problem(exc)}") from None


def fit_to_image(labels: list[LabelBox], width: int, height: int) -> list[LabelBox]:
    """The boxes clipped to the image; 422 for one with no area or beyond the tolerance."""
    fitted = []
    for i, label in enumerate(labels):
        b = label.box
        values = (b.x1, b.y1, b.x2, b.y2)
        if not all(math.isfinite(v) for v in values):
            raise InvalidLabels(f"labels.{i}.box: coordinates must be finite numbers")
        if b.x2 <= b.x1 or b.y2 <= b.y1:
            raise InvalidLabels(f"labels.{i}.box: x2 must exceed x1 and y2 exceed y1 "
                                f"(got {b.x1:g},{b.y1:g},{b.x2:g},{b.y2:g})")
        tol = EDGE_TOLERANCE_PX
        if b.x1 < -tol or b.y1 < -tol or b.x2 > width + tol or b.y2 > height + tol:
            raise InvalidLabels(f"labels.{i}.box ({b.x1:g},{b.y1:g},{b.x2:g},{b.y2:g}) lies outside "
                                f"the {width}x{height} image (upright, EXIF orientation applied)")
        x1, y1 = max(b.x1, 0.0), max(b.y1, 0.0)
        x2, y2 = min(b.x2, float(width)), min(b.y2, float(height))
        if x2 <= x1 or y2 <= y1:
            raise InvalidLabels(f"labels.{i}.box has no area inside the image")
        fitted.append(LabelBox(class_name=label.class_name, box=Box(x1=x1, y1=y1, x2=x2, y2=y2)))
    return fitted


def to_yolo(labels: list[LabelBox], width: int, height: int) -> str:
    """YOLO label lines (`class cx cy w h`, normalised) for boxes already fitted to the image."""
    lines = []
    for label in labels:
        b = label.box
        cx, cy = (b.x1 + b.x2) / 2 / width, (b.y1 + b.y2) / 2 / height
        w, h = (b.x2 - b.x1) / width, (b.y2 - b.y1) / height
        lines.append(f"{CLASSES.index(label.class_name)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return "".join(lines)


def from_yolo(text: str, width: int, height: int) -> list[LabelBox]:
    """Boxes in pixels from YOLO label lines; lines that are not `class cx cy w h` with a known
    class are skipped (a label file edited by hand must not break the listing)."""
    labels = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 5:
            continue
        try:
            cls = int(fields[0])
            cx, cy, w, h = (float(f) for f in fields[1:])
        except ValueError:
            continue
        if not 0 <= cls < len(CLASSES):
            continue
        box = Box(x1=round((cx - w / 2) * width, 2), y1=round((cy - h / 2) * height, 2),
                  x2=round((cx + w / 2) * width, 2), y2=round((cy + h / 2) * height, 2))
        labels.append(LabelBox(class_name=CLASSES[cls], box=box))
    return labels


def class_counts(labels: list[LabelBox]) -> dict[str, int]:
    """Boxes per class, every class present (zeros included), like the detect answer's counts."""
    return {name: sum(1 for label in labels if label.class_name == name) for name in CLASSES}
