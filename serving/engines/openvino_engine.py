"""OpenVINO (optional extra): the same ONNX file, compiled for this CPU, in fp32 or bf16.

bf16 is OpenVINO's inference precision hint: weights and activations are rounded to bf16 where
the CPU multiplies bf16 natively (AVX-512 BF16, AMX), so the file stays the fp32 one.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from serving.engines.base import EngineName, Precision

_PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: the file's own int8 layers


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _dims(partial_shape: object) -> tuple[int | None, ...]:
    return tuple(d.get_length() if d.is_static else None for d in partial_shape)  # type: ignore[attr-defined]


class OpenVinoEngine:
    name: EngineName = "openvino"

    def __init__(self, model_path: str, precision: Precision, threads: int, idle_spin: bool) -> None:
        # OpenVINO's runtime sends nothing; its telemetry lives in the model-conversion tools,
        # which this never imports. Opting out still covers a tool imported later.
        os.environ.setdefault("OPENVINO_TELEMETRY_OPT_OUT", "1")
        import openvino as ov

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

