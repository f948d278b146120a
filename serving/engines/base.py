"""What the detector asks of an inference engine."""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np

EngineName = Literal["onnxruntime", "openvino"]
Precision = Literal["fp32", "bf16", "int8"]
ENGINE_NAMES: tuple[EngineName, ...] = ("onnxruntime", "openvino")
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "int8")


class Engine(Protocol):
    """One loaded network: a blob (N, 3, H, W) float32 in, the first output out."""

    name: EngineName
    precision: Precision
    input_name: str
    # The input's declared shape: ints for fixed axes, None for dynamic ones.
    input_shape: tuple[int | None, ...]
    output_shape: tuple[int | None, ...]
    stride: int  # from the model's metadata (Ultralytics writes it), else 32

    def run(self, blob: np.ndarray) -> np.ndarray: ...

    def providers(self) -> list[str]:
        """What executes it, most specific first (e.g. ONNX Runtime's execution providers)."""
        ...
