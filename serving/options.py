"""The detect options every interface takes: the HTTP query (`?conf=&classes=...`), `weedscan
detect` and `weedscan batch` (`--conf --classes ...`). One pydantic model holds their names,
ranges and checks; each interface only maps its own syntax onto it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from serving.detector import DetectOptions
from serving.vegetation import VegetationOptions

# Bounds that keep the green-mode arithmetic finite: every vegetation index lies within -2.4 to 3,
# so a threshold beyond +-10 means "everything" or "nothing" as well; no image has more pixels
# than MAX_MIN_AREA.
VEG_THRESHOLD_BOUND = 10.0
MAX_MIN_AREA = 10**10

ClassLookup = Callable[[Sequence[str]], tuple[int, ...]]  # names -> ids; ValueError names unknowns


def _a_fraction(value: Any) -> Any:
    """Anything that is no finite number (nan, inf, text) is told what a fraction is; a number
    outside 0-1 gets the range check's own message."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise PydanticCustomError("fraction", "Input should be a number between 0 and 1")
    return value


Fraction = Annotated[float, BeforeValidator(_a_fraction)]


class DetectParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conf: Fraction | None = Field(None, ge=0, le=1, description="minimum confidence; default from the model card")
    iou: Fraction | None = Field(None, ge=0, le=1, description="NMS IoU threshold")
    classes: list[str] | None = Field(None, description="class names, e.g. weed; comma-separated "
                                      "(classes=crop,weed) or repeated (classes=crop&classes=weed)")
    max_det: int = Field(300, ge=1, le=1000, description="at most this many boxes")
    tile: Literal["auto", "on", "off"] = Field("auto", description="tile big images")
    lanes: int | None = Field(None, ge=1, le=64, description="sprayer lanes: N vertical strips")
    mode: Literal["model", "green"] = Field("model", description="green: no model, every vegetation "
                                            "region is a `plant` (green-on-brown)")
    veg_index: Literal["exg", "exgr", "hsv"] = Field("exg", description="mode=green: vegetation index")
    veg_threshold: Literal["auto"] | Annotated[float, Field(
        ge=-VEG_THRESHOLD_BOUND, le=VEG_THRESHOLD_BOUND, allow_inf_nan=False)] = Field(
        "auto", description=f"mode=green: index threshold, -{VEG_THRESHOLD_BOUND:g} to "
        f"{VEG_THRESHOLD_BOUND:g} (every index lies within -2.4 to 3), or auto (Otsu)")
    min_area: int = Field(50, ge=1, le=MAX_MIN_AREA,
                          description="mode=green: smallest plant region, pixels")


class OptionError(ValueError):
    """A bad option value; the message starts with the option's name (`classes: ...`)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


@dataclass(frozen=True)
class DetectQuery:
    options: DetectOptions
    lanes: int | None
    green: VegetationOptions | None = None  # mode=green: no model runs
    model: str | None = None  # the server's model that answers (None: green mode)


def parse_params(values: Mapping[str, Any]) -> DetectParams:
    """Validate raw values (None: not given); OptionError names the first bad one."""
    try:
        return DetectParams.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "options"
        raise OptionError(name, f"{error['msg']} (got {error.get('input')!r})") from exc


def class_ids(classes: list[str] | None, lookup: ClassLookup | None) -> tuple[int, ...] | None:
    """["weed,crop"] or ["weed", "crop"] -> the model's class ids; None for all classes (or no
    model to look up)."""
    if classes is None:
        return None
    names = [n.strip() for value in classes for n in value.split(",") if n.strip()]
    if not names:
        raise OptionError("classes", "give at least one class name")
    if lookup is None:
        return None
    try:
        return lookup(names)
    except ValueError as exc:
        raise OptionError("classes", str(exc)) from exc


GREEN_ONLY = ("veg_index", "veg_threshold", "min_area")  # options that mean nothing to the model


def to_query(params: DetectParams, lookup: ClassLookup | None) -> DetectQuery:
    """The validated params as the detector's options; OptionError for unknown classes, and for
    a green-mode option given without mode=green (it would be ignored: a mistake, not a no-op)."""
    if params.mode != "green":
        given = [name for name in GREEN_ONLY if name in params.model_fields_set]
        if given:
            raise OptionError(given[0], "only with mode=green (the model does not use it)")
    green = (VegetationOptions(params.veg_index, params.veg_threshold, params.min_area)
             if params.mode == "green" else None)
    options = DetectOptions(conf=params.conf, iou=params.iou, classes=class_ids(params.classes, lookup),
                            max_det=params.max_det, tile=params.tile)
    return DetectQuery(options, params.lanes, green)
