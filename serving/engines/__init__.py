"""Inference engines: what runs the network's forward pass for the detector.

ONNX Runtime (always installed) runs fp32 and int8 (QDQ) files; OpenVINO (the optional
`openvino` extra) also runs an fp32 file in bf16 on CPUs with native bf16. `choose_engine` picks,
for the CPU it runs on and the precisions the model card has validated, what `auto` means.
"""

from serving.engines.base import Engine, EngineName, Precision
from serving.engines.choose import EngineChoice, EngineChoiceError, choose_engine, open_engine
from serving.engines.cpu import CpuFeatures

__all__ = ["CpuFeatures", "Engine", "EngineChoice", "EngineChoiceError", "EngineName", "Precision",
           "choose_engine", "open_engine"]
