"""OpenVINO (optional extra): the same ONNX file, compiled for this CPU, in fp32 or bf16; or a
model's int8 variant, an OpenVINO IR (.xml + .bin) that `weedscan quantize --engine openvino` made.

bf16 is OpenVINO's inference precision hint: weights and activations are rounded to bf16 where
the CPU multiplies bf16 natively (AVX-512 BF16, AMX), so the file stays the fp32 one.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

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
    """The model compiled for a fixed square input (the card's input size; the image is
    letterboxed into it), once per batch size it meets, up to STATIC_BATCHES of them: OpenVINO's
    CPU plugin runs a fixed shape much faster than a dynamic one, and a fixed shape gives one
    photo the same boxes whatever the server ran before. A batch size met first compiles on the
    spot (once per server); beyond STATIC_BATCHES, batches run on the model compiled with a
    dynamic batch size, so no client can make the server compile without end."""

    name: EngineName = "openvino"
    STATIC_BATCHES = 8

    def __init__(self, model_path: str, precision: Precision, threads: int, idle_spin: bool,
                 weights_path: str | None = None, input_size: int | None = None) -> None:
        """`weights_path`: an IR's .bin, named because OpenVINO would otherwise guess it.
        `input_size`: the square input a model with a dynamic height and width is fixed to."""
        ov = import_openvino()

        self.precision: Precision = precision
        self._core = ov.Core()
        model = (self._core.read_model(model_path, weights_path) if weights_path
                 else self._core.read_model(model_path))
        if input_size and any(d is None for d in _dims(model.inputs[0].get_partial_shape())[2:]):
            model.reshape({0: ov.PartialShape([-1, 3, input_size, input_size])})
        self._config = {
            "INFERENCE_PRECISION_HINT": _PRECISION_HINTS[precision],
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
        }
        self._model = model
        self.compiled = self._core.compile_model(model, "CPU", self._config)
        del idle_spin  # OpenVINO's threads sleep between runs already
        self.input_name: str = model.inputs[0].get_any_name()
        self.input_shape = _dims(model.inputs[0].get_partial_shape())
        self.output_shape = _dims(model.outputs[0].get_partial_shape())
        # The ONNX file's metadata (Ultralytics writes the stride there) is under "framework".
        has_stride = model.has_rt_info(["framework", "stride"])
        self.stride = int(model.get_rt_info(["framework", "stride"]).astype(str)) if has_stride else 32
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # one run at a time: runs from several threads take turns
        self._by_batch: dict[int, Any] = {}  # batch size -> the infer request of its own compile

    def run(self, blob: np.ndarray) -> np.ndarray:
        with self._lock:
            request = self._request_for(blob.shape[0])
            outputs = request.infer({0: blob})
            return np.array(outputs[0])  # a copy: the request's buffer is reused

    def _request_for(self, batch: int) -> Any:  # noqa: ANN401 - an openvino InferRequest
        request = self._by_batch.get(batch)
        if request is not None:
            return request
        if self.input_shape[0] is not None or len(self._by_batch) >= self.STATIC_BATCHES:
            return self._request
        model = self._model.clone()
        model.reshape({0: [batch, *self.input_shape[1:]]})
        request = self._by_batch[batch] = self._core.compile_model(model, "CPU", self._config).create_infer_request()
        return request

    def providers(self) -> list[str]:
        return ["OpenVINO CPU"]
