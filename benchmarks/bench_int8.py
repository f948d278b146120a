"""int8 vs fp32: speed measured side by side here, accuracy from `weedscan eval` (the cards).

    .venv/bin/python benchmarks/bench_int8.py [--fp32 models/weedscan.onnx] [--int8 PATH]

The int8 model ships only if its mAP50 is within 0.01 of fp32 on every val split and it is at
least 1.3x faster per image. Also counts which operators of the int8 graph run in int8 and which
stay float (QDQ: an operator runs in int8 where its inputs come from DequantizeLinear nodes and its
output feeds a QuantizeLinear). Writes benchmarks/results/int8.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, RESULTS_DIR, provenance, save_result, stats_ms  # noqa: E402
from serving.config import cpu_count  # noqa: E402
from serving.detector import DetectOptions, Detector  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
MIN_SPEEDUP = 1.3


def operator_census(model_path: Path) -> dict[str, tuple[int, int]]:
    """op type -> (nodes in int8, nodes in float) for the compute operators of a QDQ graph."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    quantized_tensors = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    census: dict[str, list[int]] = {}
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or node.op_type in _SHAPE_OPS:
            continue
        counts = census.setdefault(node.op_type, [0, 0])
        counts[0 if node.output[0] in quantized_tensors else 1] += 1
    return {op: (q, f) for op, (q, f) in sorted(census.items(), key=lambda kv: -sum(kv[1]))}


_SHAPE_OPS = {"Shape", "Gather", "Unsqueeze", "Range", "Cast", "ConstantOfShape", "Expand", "Reshape",
              "Transpose", "Slice", "Constant"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fp32", type=Path, default=REPO / "models" / "weedscan.onnx")
    parser.add_argument("--int8", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=cpu_count())
    args = parser.parse_args()
    int8 = args.int8 or args.fp32.with_name(f"{args.fp32.stem}-int8.onnx")

    paths = sorted((SHARED / "sesame" / "images" / "val").glob("*.jpeg"))[:16] + \
        sorted((SHARED / "cwfid" / "images" / "val").glob("*.png"))[:4]
    frames = [cv2.imread(str(p)) for p in paths]
    header = provenance()
    detectors = {"fp32": Detector(args.fp32, threads=args.threads),
                 "int8": Detector(int8, threads=args.threads)}
    times: dict[str, list[float]] = {k: [] for k in detectors}
    for detector in detectors.values():
        detector.warmup()
    for _ in range(args.rounds):
        for name, detector in detectors.items():  # interleaved so load changes hit both
            for frame in frames:
                start = time.perf_counter()
                detector.detect(frame, DetectOptions(tile="off"))
                times[name].append(time.perf_counter() - start)

    cards = {k: json.loads(d.model_path.with_suffix(".json").read_text(encoding="utf-8")) for k, d in detectors.items()}
    datasets = sorted(cards["fp32"].get("metrics", {}))
    lines = ["## int8 vs fp32 (`benchmarks/bench_int8.py`)", "", header, "",
             f"{len(frames)} val images x {args.rounds} rounds, interleaved, {args.threads} threads; "
             "detector time (letterbox + ONNX Runtime + decoding).", "",
             "| model | size MB | median ms | p95 ms | " + " | ".join(f"mAP50 {d}" for d in datasets) + " |",
             "|---|---|---|---|" + "---|" * len(datasets)]
    for name, detector in detectors.items():
        s = stats_ms(times[name])
        maps = [cards[name].get("metrics", {}).get(d, {}).get("mAP50", float("nan")) for d in datasets]
        lines.append(f"| {name} | {detector.model_path.stat().st_size / 1e6:.1f} | {s['median']:.1f} | "
                     f"{s['p95']:.1f} | " + " | ".join(f"{m:.3f}" for m in maps) + " |")
    speedup = stats_ms(times["fp32"])["median"] / stats_ms(times["int8"])["median"]
    holds = all(cards["fp32"]["metrics"][d]["mAP50"] - cards["int8"]["metrics"][d]["mAP50"] <= 0.01
                for d in datasets)
    verdict = "ship it" if speedup >= MIN_SPEEDUP and holds else "do not ship"
    lines += ["", f"Verdict: **{verdict}** (int8 speed-up {speedup:.2f}x, needs >= {MIN_SPEEDUP}x; "
              f"mAP50 within 0.01 on every split: {holds}).", "",
              "Operators of the int8 graph (shape arithmetic left out): in int8 / in float.", "",
              "| operator | int8 | float |", "|---|---|---|"]
    lines += [f"| {op} | {q} | {f} |" for op, (q, f) in operator_census(int8).items()]
    lines.append("")
    save_result(RESULTS_DIR / "int8.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
