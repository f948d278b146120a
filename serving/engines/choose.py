"""What `auto` means for one model on this machine, and opening the engine it names.

`auto` runs an fp32 file in bf16 on OpenVINO where the CPU multiplies bf16 natively, OpenVINO
is installed and the model card shows bf16 kept its accuracy (PrecisionCheck.validated); else
in fp32 on ONNX Runtime, as weedscan always has. An int8 file (`weedscan quantize`) runs as int8.
A forced choice is obeyed, and the choice says what the card measured it to cost.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from serving.engines.base import Engine, EngineName, Precision
from serving.engines.cpu import CpuFeatures, this_cpu
from serving.engines.onnxruntime_engine import OnnxRuntimeEngine
from serving.engines.openvino_engine import OpenVinoEngine, openvino_available
from serving.errors import ModelCardError
from serving.model_card import ModelCard

log = logging.getLogger("weedscan.engines")

EngineRequest = Literal["auto", "onnxruntime", "openvino"]
PrecisionRequest = Literal["auto", "fp32", "bf16", "int8"]
OPENVINO_INSTALL = "pip install -e '.[openvino]'"


class EngineChoiceError(ModelCardError):
    """This engine and precision cannot run this model here (the message says why and what to do)."""


class EngineChoice(BaseModel):
    """Which engine and precision run a model, and why."""

    engine: EngineName
    precision: Precision
    requested_engine: EngineRequest = "auto"
    requested_precision: PrecisionRequest = "auto"
    validated: bool | None = Field(None, description=(
        "the card shows this precision kept accuracy on every val split; None: fp32 on ONNX "
        "Runtime, the reference the others are measured against"))
    reason: str = ""


def _cost(card: ModelCard, engine: EngineName, precision: Precision) -> tuple[bool | None, str]:
    if engine == "onnxruntime" and precision == card.file_precision():
        return (None, "the reference") if precision == "fp32" else _checked(card, engine, precision)
    return _checked(card, engine, precision)


def _checked(card: ModelCard, engine: EngineName, precision: Precision) -> tuple[bool | None, str]:
    check = card.precision_check(engine, precision)
    if check is None:
        return False, f"{engine} {precision} was never measured on this model's val splits"
    worst = max(check.drop, key=lambda name: check.drop[name])
    verdict = "kept accuracy" if check.validated else "NOT validated"
    return check.validated, (f"{engine} {precision} {verdict}: at most {check.max_drop:+.3f} mAP50 "
                             f"against fp32 ({worst}), measured on {check.cpu or 'an unrecorded CPU'}")


def choose_engine(card: ModelCard, engine: EngineRequest = "auto", precision: PrecisionRequest = "auto",
                  cpu: CpuFeatures | None = None, have_openvino: bool | None = None) -> EngineChoice:
    """The engine and precision for this model; EngineChoiceError when the request cannot be met."""
    cpu = cpu or this_cpu()
    have_openvino = openvino_available() if have_openvino is None else have_openvino
    asked = {"requested_engine": engine, "requested_precision": precision}
    if engine == "openvino" and not have_openvino:
        raise EngineChoiceError(f"OpenVINO is not installed ({OPENVINO_INSTALL}), so "
                                "WEEDSCAN_ENGINE=openvino cannot be served")

    if card.file_precision() == "int8":
        if precision not in ("auto", "int8"):
            raise EngineChoiceError(f"{card.name} is an int8 file; it runs as int8, not {precision}")
        chosen: EngineName = "openvino" if engine == "openvino" else "onnxruntime"
        validated, why = _cost(card, chosen, "int8")
        return EngineChoice(engine=chosen, precision="int8", validated=validated, reason=why, **asked)

    if precision == "int8":
        raise EngineChoiceError(f"{card.name} is an fp32 file: make an int8 copy with `weedscan quantize` "
                                "and serve that model for int8")
    if precision == "bf16":
        if engine == "onnxruntime":
            raise EngineChoiceError("ONNX Runtime runs fp32 and int8 files; bf16 needs "
                                    "WEEDSCAN_ENGINE=openvino (or auto)")
        if not have_openvino:
            raise EngineChoiceError(f"bf16 needs OpenVINO, which is not installed ({OPENVINO_INSTALL})")
        validated, why = _cost(card, "openvino", "bf16")
        if not cpu.native_bf16:
            why += "; this CPU has no native bf16, so it is emulated and slower than fp32"
        return EngineChoice(engine="openvino", precision="bf16", validated=validated, reason=why, **asked)
    if precision == "fp32":
        chosen = "openvino" if engine == "openvino" else "onnxruntime"
        validated, why = _cost(card, chosen, "fp32")
        return EngineChoice(engine=chosen, precision="fp32", validated=validated, reason=why, **asked)

    # precision auto: bf16 where it pays and was validated, else fp32
    if engine in ("auto", "openvino") and have_openvino and cpu.native_bf16:
        check = card.precision_check("openvino", "bf16")
        if check is not None and check.validated:
            return EngineChoice(engine="openvino", precision="bf16", validated=True,
                                reason="auto: " + _checked(card, "openvino", "bf16")[1], **asked)
    fallback: EngineName = "openvino" if engine == "openvino" else "onnxruntime"
    validated, why = _cost(card, fallback, "fp32")
    if not have_openvino:
        because = "OpenVINO is not installed"
    elif not cpu.native_bf16:
        because = "this CPU has no native bf16"
    else:
        because = "the card shows no validated bf16"
    return EngineChoice(engine=fallback, precision="fp32", validated=validated,
                        reason=f"auto: fp32, because {because} ({why})", **asked)


def open_engine(model_path: Path, choice: EngineChoice, threads: int, idle_spin: bool) -> Engine:
    if choice.validated is False:
        log.warning("%s runs on %s %s: %s", model_path.name, choice.engine, choice.precision, choice.reason)
    if choice.engine == "openvino":
        return OpenVinoEngine(str(model_path), choice.precision, threads, idle_spin)
    return OnnxRuntimeEngine(str(model_path), choice.precision, threads, idle_spin)
