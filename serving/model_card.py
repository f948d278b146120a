"""The model card (models/NAME.json): one typed schema, one reader, one writer.

Loading validates the card and checks that it belongs to its .onnx file (sha256). `weedscan
export` and `weedscan quantize` write it through `write_card`; `GET /v1/models` returns it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.errors import ModelCardError


class Thresholds(BaseModel):
    """Defaults a request gets when it sets no conf/iou."""

    conf: float = Field(0.25, ge=0, le=1, description="minimum confidence of a detection")
    iou: float = Field(0.7, ge=0, le=1, description="NMS IoU above which the weaker box is dropped")
    conf_source: str | None = Field(
        None, description="how conf was chosen, e.g. the confidence of maximum F1 on the val images")


LINEAGE_RELATIONS = ("fine-tuned from", "pretrained start")


class LineageEntry(BaseModel):
    """One ancestor of a model: its immediate parent first, the pretrained start last."""

    name: str = Field(min_length=1)
    file: str = Field(min_length=1, description="the ancestor's file name")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of that file")
    relation: Literal["fine-tuned from", "pretrained start"]
    source: str = Field("", description="where the file came from (a repository and commit, a "
                                         "path, a git commit of this project)")
    licence: str = "unknown"


# `auto` runs a model at a precision only if it lost at most this much mAP50 on every val split.
MAX_VALIDATED_DROP = 0.01


class PrecisionCheck(BaseModel):
    """How one engine and precision scored this model's file on its val splits, against ONNX
    Runtime fp32 through the same serving code (written by `weedscan export` / `quantize`)."""

    engine: Literal["onnxruntime", "openvino"]
    precision: Literal["fp32", "bf16", "int8"]
    map50: dict[str, float] = Field(description="val mAP50 per dataset")
    drop: dict[str, float] = Field(description="mAP50 lost per dataset against ONNX Runtime fp32 "
                                               "(negative: gained)")
    latency_ms: float | None = Field(None, ge=0, description="median forward pass of one input")
    cpu: str = Field("", description="the CPU it was measured on, with its relevant flags")
    measured: str = Field("", description="when (ISO date)")
    file: str = Field("", description="the variant file that ran (ModelVariant.file); empty: the .onnx")

    @property
    def max_drop(self) -> float:
        return max(self.drop.values(), default=0.0)

    @property
    def validated(self) -> bool:
        """Kept accuracy on every val split: `auto` may choose it."""
        return bool(self.drop) and self.max_drop <= MAX_VALIDATED_DROP


class ModelVariant(BaseModel):
    """The same network in another form, made from the card's .onnx and kept beside it: an
    OpenVINO IR in int8 (`weedscan quantize --engine openvino`). Its files carry the model's name,
    so they move and go with it; `auto` runs it only if its PrecisionCheck is validated."""

    engine: Literal["openvino"]
    precision: Literal["int8"]
    file: str = Field(pattern=r"^[^/\\]+\.xml$", description="the IR's graph, in the model's folder")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of `file`")
    weights_file: str = Field(pattern=r"^[^/\\]+\.bin$", description="the IR's weights, beside it")
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of `weights_file`")
    source_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the .onnx it was made from")
    method: dict[str, Any] = Field(default_factory=dict, description="how it was made (quantizer, "
                                                                     "calibration, layers kept in float)")

    def paths(self, model_path: Path) -> tuple[Path, Path]:
        return model_path.parent / self.file, model_path.parent / self.weights_file

    def problem(self, model_path: Path, verify: bool = True) -> str | None:
        """Why this variant cannot run beside `model_path` (a file missing, or, with `verify`, not
        the file the card names), None when it can. ModelCard.variant already skips a variant
        made from another .onnx."""
        graph, weights = self.paths(model_path)
        for path, expected in ((graph, self.sha256), (weights, self.weights_sha256)):
            if not path.is_file():
                return f"{path.name} is missing"
            if verify and sha256_of(path) != expected:
                return f"sha256 of {path.name} does not match the card"
        return None


def variant_file_names(model_name: str, engine: str, precision: str) -> tuple[str, str]:
    """NAME.ENGINE-PRECISION.xml/.bin: the files of a variant of model NAME."""
    stem = f"{model_name}.{engine}-{precision}"
    return f"{stem}.xml", f"{stem}.bin"


class ModelCard(BaseModel):
    """What a model is, what it was trained on, how it scored and what it should not be used for.

    The fields serving relies on are typed strictly; the descriptive ones (training data, recipe,
    metrics) keep the shapes `weedscan export` and `weedscan eval` produce.
    """

    model_config = ConfigDict(extra="allow")  # a newer exporter may add fields: keep them

    name: str = Field(min_length=1)
    version: str = ""
    created: str | None = None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the .onnx file")
    task: Literal["detect"] = "detect"
    classes: list[str] = Field(min_length=1, description="class names in output order")
    input_size: int | None = Field(None, ge=32, description="square model input in pixels")
    input_border: int = Field(0, ge=0, description=(
        "grey frame in model-input pixels kept around every image (it is fitted inside), as "
        "Ultralytics' validator pads its val images; 0: the image fills the input. Tiles of a "
        "big photo always fill it"))
    output_layout: Literal["raw", "end2end"] | None = None
    thresholds: Thresholds = Field(default_factory=Thresholds)
    precision: str = "fp32"
    training_data: list[dict[str, Any]] = Field(default_factory=list)
    training_recipe: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict, description="val scores per dataset")
    export_parity: dict[str, Any] = Field(default_factory=dict)
    quantization: dict[str, Any] | None = None
    precision_checks: list[PrecisionCheck] = Field(default_factory=list, description=(
        "each engine and precision measured on the val splits; `auto` picks among the validated"))
    variants: list[ModelVariant] = Field(default_factory=list, description=(
        "other forms of this network kept beside the .onnx (an OpenVINO int8 IR); each has its "
        "precision check"))
    licence: str = "unknown"
    lineage: list[LineageEntry] = Field(default_factory=list, description=(
        "ancestors from the immediate parent back to the pretrained start (empty: trained "
        "from scratch, or a card written before lineage was recorded)"))
    intended_use: str = ""
    limitations: list[str] = Field(default_factory=list)

    def precision_check(self, engine: str, precision: str) -> PrecisionCheck | None:
        return next((c for c in self.precision_checks
                     if c.engine == engine and c.precision == precision), None)

    def variant(self, engine: str, precision: str) -> ModelVariant | None:
        """The variant of this engine and precision made from this very file, if the card has one."""
        return next((v for v in self.variants if v.engine == engine and v.precision == precision
                     and v.source_sha256 == self.sha256), None)

    def file_precision(self) -> Literal["fp32", "int8"]:
        """What the file's weights are: int8 for a quantized file (`weedscan quantize`)."""
        return "int8" if self.precision.startswith("int8") else "fp32"

    def model_info(self) -> dict[str, str]:
        """What each answer says about the model that produced it."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def card_path_for(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def _validation_message(card_path: Path, exc: ValidationError) -> str:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'card'}: {e['msg']}" for e in exc.errors())
    return f"model card {card_path} is invalid: {problems}"


def load_card(model_path: Path, verify: bool = True) -> ModelCard:
    """Read NAME.json beside NAME.onnx; refuse it when invalid or when its sha256 does not match."""
    card_path = card_path_for(model_path)
    if not model_path.is_file():
        raise ModelCardError(f"model file not found: {model_path}")
    if not card_path.is_file():
        raise ModelCardError(f"model card not found: {card_path} (every model needs its card)")
    try:
        card = ModelCard.model_validate_json(card_path.read_bytes())
    except OSError as exc:
        raise ModelCardError(f"model card {card_path} cannot be read: {exc}") from exc
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise ModelCardError(f"model card {card_path} is not valid JSON: {exc.errors()[0]['msg']}") from exc
        raise ModelCardError(_validation_message(card_path, exc)) from exc
    if verify:
        actual = sha256_of(model_path)
        if actual != card.sha256:
            raise ModelCardError(
                f"sha256 of {model_path.name} is {actual} but its card says {card.sha256}: "
                "the model and its card do not belong together; refusing to load")
    return card


def write_card(model_path: Path, card: ModelCard) -> Path:
    """The one writer of NAME.json (validated again, so no tool can write a card serving refuses)."""
    path = card_path_for(model_path)
    path.write_text(card_json(card), encoding="utf-8")
    return path


def card_json(card: ModelCard) -> str:
    """The card as NAME.json holds it, validated again (no tool can write a card serving refuses)."""
    checked = ModelCard.model_validate(card.model_dump())
    return checked.model_dump_json(indent=2, exclude_none=True) + "\n"
