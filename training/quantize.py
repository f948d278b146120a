"""`weedscan quantize`: ONNX Runtime static int8 quantization, calibrated on training images.

QDQ format, uint8 activations x int8 per-channel weights. By default every operator ONNX Runtime
can run in int8 is quantized (`ops="all"`): with only the convolutions in int8 (`ops="conv"`),
each SiLU (Sigmoid, Mul), Add, Concat and Resize between them runs in float behind a
dequantize/quantize pair, and at 320 px that traffic ate the whole int8 gain (measured in
benchmarks/RESULTS.md). The head after its conv branches (box decoding, class
Sigmoid, the output Concat) and, by default, the branches' last convolutions stay in float, where
int8 rounding costs the most accuracy.
"""

from __future__ import annotations

import importlib.util
import random
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from serving.detector import Detector
from serving.model_card import sha256_of, write_card
from serving.preprocess import letterbox, to_blob
from training.bf16 import cpu_has_any_flag
from training.evaluate import evaluate
from training.offline import import_ultralytics
from training.precision import check_precisions, map50_of, record_precisions
from training.trainset import YoloDataset

TRAIN_EXTRA_MISSING = "error: this command needs the trainer side: pip install -e '.[train]'"


def require_train_extra(scoring: bool) -> None:
    """onnx rewrites the graph and Ultralytics scores the copy: a serving-only install has
    neither, so stop with one line saying what to install before any work starts."""
    if scoring:
        import_ultralytics()  # the same line when Ultralytics (or matplotlib) is missing
    if importlib.util.find_spec("onnx") is None:
        raise SystemExit(TRAIN_EXTRA_MISSING)


def calibration_images(data_yamls: list[Path], count: int, seed: int = 0) -> list[Path]:
    paths = [p for y in data_yamls for p in YoloDataset.from_yaml(y).images("train")]
    random.Random(seed).shuffle(paths)
    return paths[:count]


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over images letterboxed as served."""

    def __init__(self, input_name: str, size: int, paths: list[Path], border: int = 0) -> None:
        self.input_name, self.size, self.border = input_name, size, border
        self._iter: Iterator[Path] = iter(paths)

    def get_next(self) -> dict[str, np.ndarray] | None:
        for path in self._iter:
            image = cv2.imread(str(path))
            if image is not None:
                return {self.input_name: to_blob([letterbox(image, self.size, border=self.border)[0]])}
        return None


def head_nodes_to_keep_float(model: Any, keep_last_convs: bool) -> list[str]:  # noqa: ANN401
    """Names of the head's nodes after its conv branches (and optionally each branch's last conv)."""
    names = [n.name for n in model.graph.node]
    indices = [int(m.group(1)) for n in names if (m := re.match(r"/model\.(\d+)/", n))]
    if not indices:
        return []
    head = f"/model.{max(indices)}/"
    # Everything of the head outside its conv branches: the DFL, the anchor arithmetic, the class
    # Sigmoid and the final Concat. Quantized, that Concat shares one uint8 scale between pixel
    # coordinates (0..320) and class probabilities (0..1): every score rounds to 0 or 1.25.
    keep = [n for n in names if n.startswith(head) and not re.search(r"/(one2one_)?cv[23]\.\d+\.", n)]
    if keep_last_convs:
        # cv2.i.2 / cv3.i.2 (and one2one_ twins): the convs producing box and class logits.
        keep += [n for n in names if n.startswith(head) and re.search(r"cv[23]\.\d+\.2/Conv$", n)]
    return keep


QUANTIZED_OPS = {"all": None, "conv": ["Conv"]}  # None: every operator ORT has an int8 kernel for
# Activation ranges: MinMax takes each tensor's extremes over the calibration images; Percentile
# clips the rare outliers (99.999th percentile), spending the 256 levels on the values that occur.
CALIBRATION_METHODS = {"minmax": lambda m: m.MinMax, "percentile": lambda m: m.Percentile,
                       "entropy": lambda m: m.Entropy}
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_has_vnni() -> bool:
    """Without VNNI, u8 x s8 products summed in 16 bits can saturate: weights then use 7 bits."""
    return cpu_has_any_flag(_VNNI_FLAGS)


def quantize(model_path: Path, data_yamls: list[Path], out_path: Path, calib_count: int = 256,
             keep_last_convs: bool = True, evaluate_on: str | None = "val",
             ops: str = "all", method: str = "minmax", precision_checks: bool = True) -> Path:
    """An int8 copy of `model_path` at `out_path` with its card; scored on `evaluate_on` and,
    with `precision_checks`, checked per engine against the fp32 source (training/precision.py)."""
    require_train_extra(scoring=bool(evaluate_on))
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # Calibration feeds ONNX Runtime's float graph, so the reader follows that engine's input.
    detector = Detector(model_path, engine="onnxruntime", precision="fp32")
    paths = calibration_images(data_yamls, calib_count)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
        keep_float = head_nodes_to_keep_float(onnx.load(str(prepared)), keep_last_convs)
        quantize_static(
            str(prepared), str(out_path),
            _Reader(detector.engine.input_name, detector.input_size, paths, detector.input_border),
            quant_format=QuantFormat.QDQ, op_types_to_quantize=QUANTIZED_OPS[ops], per_channel=True,
            reduce_range=not cpu_has_vnni(), activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=keep_float, calibrate_method=CALIBRATION_METHODS[method](CalibrationMethod))

    source = detector.model_card
    card = source.model_copy(update={
        "name": f"{source.name}-int8", "sha256": sha256_of(out_path), "precision_checks": [],
        "precision": "int8 (ONNX Runtime static quantization, QDQ, per-channel)",
        "quantization": {"calibration_images": len(paths), "method": method, "operators": ops,
                         "reduce_range": not cpu_has_vnni(), "float_nodes": keep_float,
                         "source_sha256": source.sha256}})
    write_card(out_path, card)
    if evaluate_on:  # scored at the source's default confidence, so the two cards compare
        report = evaluate(out_path, data_yamls, evaluate_on, engine="onnxruntime", precision="int8")
        card = card.model_copy(update={"metrics": report.card_metrics()})
        write_card(out_path, card)
        if precision_checks:  # drops against the fp32 source scored the same way on the same splits
            source_report = evaluate(model_path, data_yamls, evaluate_on, engine="onnxruntime", precision="fp32")
            record_precisions(out_path, check_precisions(out_path, data_yamls, evaluate_on,
                                                         reference_map50=map50_of(source_report),
                                                         scored=report))
    return out_path
