"""OpenVINO (optional extra): the same ONNX file, compiled for this CPU, in fp32 or bf16.

bf16 is OpenVINO's inference precision hint: weights and activations are rounded to bf16 where
the CPU multiplies bf16 natively (AVX-512 BF16, AMX), so the file stays the fp32 one.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from types import ModuleType

import numpy as np

from serving.engines.base import EngineName, Precision

_PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: the file's own int8 layers
# `import openvino` imports its model converter, which sends a Google Analytics event unless a
# consent file in the user's home says no. Its own fallback when the telemetry package cannot be
# imported is a stub that sends nothing; a None entry in sys.modules makes that import fail.
_TELEMETRY_PACKAGE = "openvino_telemetry"


def openvino_available() -> bool:
    """Installed (found without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def import_openvino() -> ModuleType:
    """`openvino`, with its telemetry unable to load: nothing is sent, nothing written to $HOME."""
    if _TELEMETRY_PACKAGE not in sys.modules:
        sys.modules[_TELEMETRY_PACKAGE] = None  # type: ignore[assignment]
    import openvino

    return openvino


def _dims(partial_shape: object) -> tuple[int | None, ...]:
    return tuple(d.get_length() if d.is_static else None for d in partial_shape)  # type: ignore[attr-defined]


class OpenVinoEngine:
    name: EngineName = "openvino"

    def __init__(self, model_path: str, precision: Precision, threads: int, idle_spin: bool) -> None:
        ov = import_openvino()

        self.precision: Precision = precision
        core = ov.Core()
        model = core.read_model(model_path)
        config = {
            "INFERENCE_PRECISION_HINT": _PRECISION_HINTS[precision],
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.compiled = core.compile_model(model, "CPU", config)
        del idle_spin  # OpenVINO's threads sleep between runs already
        self.input_name: str = model.inputs[0].get_any_name()
        self.input_shape = _dims(model.inputs[0].get_partial_shape())
        self.output_shape = _dims(model.outputs[0].get_partial_shape())
        # The ONNX file's metadata (Ultralytics writes the stride there) is under "framework".
        has_stride = model.has_rt_info(["framework", "stride"])
        self.stride = int(model.get_rt_info(["framework", "stride"]).astype(str)) if has_stride else 32
        self._output = self.compiled.output(0)
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request: runs from several threads take turns

    def run(self, blob: np.ndarray) -> np.ndarray:
        with self._lock:
            outputs = self._request.infer({0: blob})
            return np.array(outputs[self._output])  # a copy: the request's buffer is reused

    def providers(self) -> list[str]:
        return ["OpenVINO CPU"]

