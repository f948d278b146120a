"""bfloat16 autocast for training on CPUs with AMX/AVX-512 (Ultralytics turns AMP off on CPU).

Only the network's forward pass runs in bf16; the loss, the optimiser and the weights stay fp32,
and checkpoints hold a plain DetectionModel so plain Ultralytics can load them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Measured (benchmarks/RESULTS.md, training step precision): where bf16 is emulated (AVX2 only),
# bf16 autocast makes a training step several times *slower* than fp32; with AVX-512 BF16 it is
# faster. Only CPUs with native bf16 arithmetic gain from it.
_NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_any_flag(wanted: tuple[str, ...]) -> bool:
    """Whether /proc/cpuinfo lists any of these CPU flags (False where it cannot be read)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return any(flag in flags for flag in wanted)


def cpu_has_native_bf16() -> bool:
    return cpu_has_any_flag(_NATIVE_BF16_FLAGS)


def make_trainer_class(bf16: bool, threads: int | None = None):  # noqa: ANN201 - a DetectionTrainer subclass
    """The trainer weedscan uses: optional bf16 forward pass and a chosen torch thread count."""
    import torch
    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.nn.tasks import DetectionModel

    def to_float(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.float() if value.is_floating_point() else value
        if isinstance(value, (list, tuple)):
            return type(value)(to_float(v) for v in value)
        if isinstance(value, dict):
            return {k: to_float(v) for k, v in value.items()}
        return value

    class BF16DetectionModel(DetectionModel):
        def predict(self, x, *args, **kwargs):  # noqa: ANN001, ANN201 - Ultralytics' signature
            if self.training and x.device.type == "cpu":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return to_float(super().predict(x, *args, **kwargs))
            return super().predict(x, *args, **kwargs)

    class WeedscanTrainer(DetectionTrainer):
        def _setup_train(self):  # noqa: ANN202
            if threads and self.device.type == "cpu":
                torch.set_num_threads(threads)  # after Ultralytics' own reset to cores - 1
            return super()._setup_train()

        def get_model(self, cfg=None, weights=None, verbose=True):  # noqa: ANN001, ANN201
            model = super().get_model(cfg, weights, verbose)
            if bf16 and self.device.type == "cpu":
                model.__class__ = BF16DetectionModel
            return model

        def save_model(self):  # noqa: ANN201
            ema = self.ema.ema
            swapped = type(ema) is BF16DetectionModel
            if swapped:
                ema.__class__ = DetectionModel
            try:
                return super().save_model()
            finally:
                if swapped:
                    ema.__class__ = BF16DetectionModel

    return WeedscanTrainer
