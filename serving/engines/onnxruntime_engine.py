"""ONNX Runtime: the default engine, always installed."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from serving.engines.base import EngineName, Precision

# Best first; whatever this ONNX Runtime build offers, CPU last as the fallback.
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CoreMLExecutionProvider", "CPUExecutionProvider")


def available_providers() -> list[str]:
    offered = set(ort.get_available_providers())
    return [p for p in PREFERRED_PROVIDERS if p in offered] or ["CPUExecutionProvider"]


def _dims(shape: list[int | str | None]) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) else None for d in shape)


class OnnxRuntimeEngine:
    name: EngineName = "onnxruntime"

    def __init__(self, model_path: str, precision: Precision, threads: int, idle_spin: bool) -> None:
        """`precision` is what the file holds (fp32, or int8 for a quantized file): ONNX Runtime
        runs a file as it is. `idle_spin=False` stops its worker threads from busy-waiting
        after each run (good for back-to-back runs, a burnt core for a server whose next
        request is still on the wire)."""
        self.precision: Precision = precision
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if not idle_spin:
            options.add_session_config_entry("session.force_spinning_stop", "1")
        self.session = ort.InferenceSession(model_path, options, providers=available_providers())
        model_input = self.session.get_inputs()[0]
        self.input_name: str = model_input.name
        self.input_shape = _dims(model_input.shape)
        self.output_shape = _dims(self.session.get_outputs()[0].shape)
        self.stride = int(self.session.get_modelmeta().custom_metadata_map.get("stride", 32))

    def run(self, blob: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: blob})[0]

    def providers(self) -> list[str]:
        return self.session.get_providers()
