"""Measure each engine and precision a model can run in on its val splits, through the serving
code, against ONNX Runtime in the file's own precision; the card records it (PrecisionCheck) and
the server's `auto` chooses only among what kept accuracy."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import numpy as np

from serving.detector import Detector
from serving.engines.base import EngineName, Precision
from serving.engines.cpu import CpuFeatures, this_cpu
from serving.engines.openvino_engine import openvino_available
from serving.model_card import ModelCard, PrecisionCheck, load_card, write_card
from training.evaluate import EvalReport, evaluate

LATENCY_RUNS = 30


def combinations_to_check(card: ModelCard, cpu: CpuFeatures, have_openvino: bool,
                          model_path: Path | None = None) -> list[tuple[EngineName, Precision]]:
    """What this machine can measure for this file besides the reference (ONNX Runtime in the
    file's precision): OpenVINO in the file's precision, in bf16 for an fp32 file on a CPU with
    native bf16 (elsewhere bf16 is emulated: slow, and not what `auto` would choose), and the
    card's int8 variant where its files are beside `model_path`."""
    if not have_openvino:
        return []
    own = card.file_precision()
    combos: list[tuple[EngineName, Precision]] = [("openvino", own)]
    if own == "fp32" and cpu.native_bf16:
        combos.append(("openvino", "bf16"))
    variant = card.variant("openvino", "int8") if own == "fp32" else None
    if variant is not None and model_path is not None and variant.problem(model_path) is None:
        combos.append(("openvino", "int8"))
    return combos


def forward_latency_ms(detector: Detector, runs: int = LATENCY_RUNS) -> float:
    """Median time of one forward pass of a square input, after a warm-up."""
    blank = np.full((detector.input_size, detector.input_size, 3), 114, np.uint8)
    detector.warmup(3)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        detector.forward([blank])
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def map50_of(report: EvalReport) -> dict[str, float]:
    """mAP50 per dataset, as the card records it."""
    return {name: round(scores.mAP50, 4) for name, scores in report.datasets.items()}


def check_precisions(model_path: Path, data_yamls: list[Path], split: str = "val",
                     threads: int | None = None, reference_map50: dict[str, float] | None = None,
                     scored: EvalReport | None = None,
                     combinations: list[tuple[EngineName, Precision]] | None = None) -> list[PrecisionCheck]:
    """Score ONNX Runtime in the file's own precision and every other combination this machine
    can run, on `split`. `reference_map50`: the fp32 scores to measure drops against (an int8
    file's source), else the file itself on ONNX Runtime. `scored`: that ONNX Runtime score when
    the caller already has it (export does), so it is not measured twice. `combinations`: only
    these, against `reference_map50` (which it then needs)."""
    card = load_card(model_path)
    cpu = this_cpu()
    own = card.file_precision()
    today = datetime.date.today().isoformat()

    def latency(engine: EngineName, precision: Precision) -> float:
        return forward_latency_ms(Detector(model_path, threads=threads, engine=engine, precision=precision))

    def measure(engine: EngineName, precision: Precision) -> tuple[dict[str, float], float]:
        report = evaluate(model_path, data_yamls, split, threads=threads, engine=engine, precision=precision)
        return map50_of(report), latency(engine, precision)

    if combinations is not None:
        if reference_map50 is None:
            raise ValueError("checking chosen combinations needs the fp32 reference scores")
        measured = [(e, p, measure(e, p)) for e, p in combinations]
    else:
        own_scores = (map50_of(scored), latency("onnxruntime", own)) if scored else measure("onnxruntime", own)
        combos = combinations_to_check(card, cpu, openvino_available(), model_path)
        measured = [("onnxruntime", own, own_scores), *[(e, p, measure(e, p)) for e, p in combos]]
    baseline = reference_map50 or measured[0][2][0]
    checks = []
    for engine, precision, (scores, took) in measured:
        drop = {name: round(baseline[name] - scores[name], 4) for name in scores if name in baseline}
        variant = card.variant(engine, precision) if own == "fp32" and precision == "int8" else None
        checks.append(PrecisionCheck(engine=engine, precision=precision, map50=scores, drop=drop,
                                     latency_ms=round(took, 2), cpu=cpu.summary(), measured=today,
                                     file=variant.file if variant else ""))
    return checks


def record_precisions(model_path: Path, checks: list[PrecisionCheck]) -> ModelCard:
    """Write the checks into the model's card (replacing earlier ones of the same engine and
    precision); the model file itself is not touched, so its sha256 holds."""
    card = load_card(model_path)
    measured = {(c.engine, c.precision) for c in checks}
    kept = [c for c in card.precision_checks if (c.engine, c.precision) not in measured]
    card = card.model_copy(update={"precision_checks": [*kept, *checks]})
    write_card(model_path, card)
    return card


def format_checks(checks: list[PrecisionCheck]) -> str:
    names = sorted({name for check in checks for name in check.map50})
    lines = [f"{'engine':<12} {'precision':<9} " + " ".join(f"{n[:12]:>12}" for n in names)
             + f" {'max drop':>9} {'latency':>9}  auto may use"]
    for c in checks:
        scores = " ".join(f"{c.map50.get(n, float('nan')):>12.3f}" for n in names)
        lines.append(f"{c.engine:<12} {c.precision:<9} {scores} {c.max_drop:>+9.4f} "
                     f"{c.latency_ms or 0:>7.1f}ms  {'yes' if c.validated else 'no'}")
    return "\n".join(lines)
