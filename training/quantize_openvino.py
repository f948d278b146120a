"""`weedscan quantize --engine openvino`: an int8 variant of an fp32 model, as OpenVINO IR, made by
NNCF's post-training quantization with accuracy control, and kept beside the model.

NNCF quantizes the network read from the .onnx, scores each attempt on the val splits through
the serving detector (the variant's own engine), and reverts layers to float, most harmful first,
until no split has lost more than `max_drop` mAP50 against ONNX Runtime fp32. It starts with the
head's decoding (DFL, anchors, class Sigmoid, output Concat) in float, where one int8 scale cannot
hold both pixel coordinates and class probabilities, and the first three blocks (the stem, at
full and half resolution), whose int8 rounding cost every field accuracy in the measurements
(benchmarks/results/int8_nncf.md). OpenVINO runs its own IR correctly where it misreads an ONNX
QDQ int8 file, so the variant is IR (.xml + .bin), named after the model and recorded in its card
(ModelCard.variants, with a PrecisionCheck); the .onnx is not touched.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from serving.detector import Detector
from serving.engines.base import EngineName, Precision
from serving.engines.openvino_engine import import_openvino, openvino_available
from serving.model_card import ModelVariant, load_card, sha256_of, variant_file_names, write_card
from training.evaluate import collect, evaluate, summarize
from training.precision import check_precisions, map50_of, record_precisions
from training.quantize import head_nodes_to_keep_float
from training.trainset import YoloDataset

log = logging.getLogger("weedscan.quantize")

STEM_PATTERN = r"/model\.[0-2]/.*"  # conv, conv, C2f: the blocks at 1/2 and 1/4 resolution
NNCF_MISSING = ("error: an OpenVINO int8 variant needs NNCF and OpenVINO: "
                "pip install -e '.[train,openvino]'")


def require_nncf() -> None:
    if importlib.util.find_spec("nncf") is None or not openvino_available():
        raise SystemExit(NNCF_MISSING)


def import_nncf() -> Any:  # noqa: ANN401 - the nncf module
    """nncf with its telemetry off: NNCF_CI makes its wrapper a stub, and OpenVINO's telemetry
    package (which NNCF would send through) is made unimportable by import_openvino()."""
    os.environ["NNCF_CI"] = "1"
    import_openvino()
    import nncf

    nncf.set_log_level(logging.WARNING)  # its per-layer INFO lines would drown the progress
    return nncf


def calibration_images(data_yamls: list[Path], total: int, seed: int = 0) -> list[Path]:
    """About `total` training images (train splits only), shared out evenly between the datasets:
    a small one gives all it has and the rest goes to the others."""
    available = {y: YoloDataset.from_yaml(y).images("train") for y in data_yamls}
    picked, left = [], total
    for i, yaml_path in enumerate(sorted(data_yamls, key=lambda y: len(available[y]))):
        paths = list(available[yaml_path])
        random.Random(seed).shuffle(paths)
        share = min(len(paths), left // (len(data_yamls) - i))
        picked += paths[:share]
        left -= share
    return picked


class _RecordingEngine:
    """Wraps a detector's engine and keeps every blob it is given: the exact model inputs the
    detector builds for an image (its letterbox, border and, for a big photo, its tiles)."""

    def __init__(self, inner: Any) -> None:  # noqa: ANN401 - an Engine
        self.inner = inner
        self.blobs: list[np.ndarray] = []

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401
        return getattr(self.inner, name)

    def run(self, blob: np.ndarray) -> np.ndarray:
        self.blobs += [blob[i:i + 1] for i in range(len(blob))]
        return self.inner.run(blob)


class CompiledModelEngine:
    """An OpenVINO compiled model (NNCF's attempt) in the Engine shape, for scoring it through
    the serving detector."""

    name: EngineName = "openvino"
    precision: Precision = "int8"

    def __init__(self, compiled: Any, like: Any) -> None:  # noqa: ANN401
        self.compiled, self.output = compiled, compiled.output(0)
        self.input_name, self.input_shape = like.input_name, like.input_shape
        self.output_shape, self.stride = like.output_shape, like.stride

    def run(self, blob: np.ndarray) -> np.ndarray:
        return np.array(self.compiled(blob)[self.output])

    def providers(self) -> list[str]:
        return ["OpenVINO CPU"]


def served_inputs(detector: Detector, paths: list[Path]) -> list[np.ndarray]:
    """The model inputs (1, 3, H, W) the detector runs for these images, as it serves them."""
    recorder = _RecordingEngine(detector.engine)
    detector.engine = recorder  # type: ignore[assignment]
    try:
        for path in paths:
            image = cv2.imread(str(path))
            if image is not None:
                detector.detect(image)
    finally:
        detector.engine = recorder.inner
    return recorder.blobs


class _Scorer:
    """NNCF's validation function: 1 + (the worst val split's mAP50 change against ONNX Runtime
    fp32), scored through the serving detector, and the raw output per item (NNCF ranks layers by
    how much reverting them moves it). NNCF also divides by the metric, hence the offset of 1."""

    def __init__(self, model_path: Path, data_yamls: list[Path], split: str, threads: int | None,
                 reference: dict[str, float]) -> None:
        self.detector = Detector(model_path, threads=threads, engine="openvino", precision="fp32")
        self.datasets = [YoloDataset.from_yaml(y) for y in data_yamls]
        self.split, self.reference = split, reference
        self.count = 0  # val inputs: a call with fewer is NNCF ranking layers, not validating
        self.history: list[dict[str, float]] = []

    def __call__(self, compiled: Any, items: Any) -> tuple[float, list[list[np.ndarray]]]:  # noqa: ANN401
        blobs = list(items)
        output = compiled.output(0)
        outputs = [[np.array(compiled(blob)[output])] for blob in blobs]
        if len(blobs) < self.count:  # a ranking subset, or NNCF probing what the function returns
            return 1.0, outputs
        original = self.detector.engine
        self.detector.engine = CompiledModelEngine(compiled, original)  # type: ignore[assignment]
        try:
            scores = {d.name: float(summarize(collect(self.detector, d, self.split), self.detector.class_names,
                                              self.detector.default_conf).mAP50) for d in self.datasets}
        finally:
            self.detector.engine = original
        change = {name: round(scores[name] - self.reference[name], 4) for name in scores}
        self.history.append(change)
        log.info("int8 attempt %d: mAP50 change per split %s", len(self.history), change)
        return 1.0 + min(change.values()), outputs


def quantize_openvino(model_path: Path, data_yamls: list[Path], calib_count: int = 300,
                      max_drop: float = 0.01, split: str = "val", threads: int | None = None,
                      max_iterations: int = 8, on_progress: Callable[[str], None] | None = None
                      ) -> ModelVariant:
    """Make NAME.openvino-int8.xml/.bin beside `model_path`, check it on `split` and record both
    in the model's card. Returns the variant."""
    require_nncf()
    nncf = import_nncf()
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    say = on_progress or log.info
    card = load_card(model_path)
    if card.file_precision() != "fp32":
        raise ValueError(f"{model_path.name} is already int8: quantize its fp32 source")
    say(f"reference: ONNX Runtime fp32 on the {split} splits")
    reference = map50_of(evaluate(model_path, data_yamls, split, threads=threads,
                                  engine="onnxruntime", precision="fp32"))
    scorer = _Scorer(model_path, data_yamls, split, threads, reference)
    say(f"calibration: letterboxing about {calib_count} training images as served")
    calibration = served_inputs(scorer.detector, calibration_images(data_yamls, calib_count))
    val_paths = [p for y in data_yamls for p in YoloDataset.from_yaml(y).images(split)]
    val_inputs = [blobs[0] for p in val_paths if (blobs := served_inputs(scorer.detector, [p]))]
    scorer.count = len(val_inputs)

    import onnx

    decoding = head_nodes_to_keep_float(onnx.load(str(model_path)), keep_last_convs=False)
    network = ov.Core().read_model(str(model_path))
    started = time.perf_counter()
    say(f"quantizing with accuracy control (at most {max_drop} mAP50 lost on any {split} split)")
    quantized = nncf.quantize_with_accuracy_control(
        network, nncf.Dataset(calibration), nncf.Dataset(val_inputs), scorer,
        max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(calibration), model_type=None,
        ignored_scope=nncf.IgnoredScope(names=decoding, patterns=[STEM_PATTERN], validate=False),
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            max_num_iterations=max_iterations, num_ranking_workers=1))
    seconds = round(time.perf_counter() - started)

    graph_name, weights_name = variant_file_names(model_path.stem, "openvino", "int8")
    graph, weights = model_path.parent / graph_name, model_path.parent / weights_name
    ov.save_model(quantized, str(graph), compress_to_fp16=False)
    variant = ModelVariant(
        engine="openvino", precision="int8", file=graph.name, sha256=sha256_of(graph),
        weights_file=weights.name, weights_sha256=sha256_of(weights), source_sha256=card.sha256,
        method={"quantizer": f"NNCF {nncf.__version__} quantize_with_accuracy_control, OpenVINO backend",
                "openvino": ov.__version__, "preset": "mixed", "calibration_inputs": len(calibration),
                "max_drop": max_drop, "drop_type": "absolute, worst val split's mAP50",
                "kept_in_float": ["the head's decoding (DFL, anchors, class Sigmoid, output Concat)",
                                  "the stem (/model.0/ to /model.2/)"],
                "attempts": scorer.history, "seconds": seconds})
    others = [v for v in card.variants if (v.engine, v.precision) != ("openvino", "int8")]
    write_card(model_path, card.model_copy(update={"variants": [*others, variant]}))
    say(f"wrote {graph.name} and {weights.name}; checking it through the serving code")
    checks = check_precisions(model_path, data_yamls, split, threads, reference_map50=reference,
                              combinations=[("openvino", "int8")])
    record_precisions(model_path, checks)
    return variant


__all__ = ["NNCF_MISSING", "CompiledModelEngine", "calibration_images", "quantize_openvino",
           "require_nncf", "served_inputs"]
