"""OpenVINO's forward pass on a dynamic input shape against a model compiled for the exact shape,
for the shipped model in fp32 and its int8 variant, side by side in one run:

    flock /tmp/weedscan-cpu.lock .venv/bin/python benchmarks/bench_openvino_shapes.py [--rounds 30]

Two frame shapes alternate as a camera mix does (a square 416 x 416 input and a 4:3 frame's
416 x 320). Paths per model: `dynamic` (one model compiled with dynamic height and width, as
ONNX Runtime and OpenVINO run the .onnx by default), `static per shape` (a model compiled for
each shape: what serving's OpenVINO engine does for the first shapes it meets) and `static
square` (every frame letterboxed into the square input instead: one compile, more pixels for
a 4:3 frame). Median forward pass per input, engine only, 2 threads; compile time and RSS per
extra static model. Writes benchmarks/results/openvino_shapes.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, RESULTS_DIR, provenance, rss_mb, save_result  # noqa: E402
from serving.engines.cpu import this_cpu  # noqa: E402
from serving.engines.openvino_engine import import_openvino  # noqa: E402
from serving.model_card import load_card  # noqa: E402

SHAPES = [(1, 3, 416, 416), (1, 3, 320, 416)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "weedscan.onnx")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import os

    ov = import_openvino()
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": args.threads, "NUM_STREAMS": 1,
              "PERFORMANCE_HINT": "LATENCY"}
    variant = load_card(args.model, verify=False).variant("openvino", "int8")
    models = {"fp32 (.onnx)": (args.model, None)}
    if variant is not None:
        graph, weights = variant.paths(args.model)
        models["int8 (variant)"] = (graph, weights)
    header = provenance()
    blobs = [np.random.default_rng(0).random(shape, np.float32) for shape in SHAPES]
    square = np.zeros(SHAPES[0], np.float32)
    rows, compile_notes = [], []
    for label, (graph, weights) in models.items():
        def read(graph: Path = graph, weights: Path | None = weights):  # noqa: ANN202 - an ov.Model
            return core.read_model(str(graph), str(weights)) if weights else core.read_model(str(graph))

        dynamic = core.compile_model(read(), "CPU", config).create_infer_request()
        static = {}
        for shape in SHAPES:
            before, start = rss_mb(os.getpid()), time.perf_counter()
            model = read()
            model.reshape({0: list(shape)})
            static[shape] = core.compile_model(model, "CPU", config).create_infer_request()
            static[shape].infer({0: np.zeros(shape, np.float32)})
            compile_notes.append(f"{label} {shape[2]}x{shape[3]}: {time.perf_counter() - start:.2f} s, "
                                 f"+{rss_mb(os.getpid()) - before:.0f} MB RSS")
        times: dict[str, list[float]] = {"dynamic": [], "static per shape": [], "static square": []}
        for _ in range(3):
            for blob in blobs:
                dynamic.infer({0: blob})
                static[blob.shape].infer({0: blob})
        for _ in range(args.rounds):
            for blob in blobs:
                as_square = square if blob.shape != SHAPES[0] else blob
                for path, request, feed in (("dynamic", dynamic, blob), ("static per shape", static[blob.shape], blob),
                                            ("static square", static[SHAPES[0]], as_square)):
                    start = time.perf_counter()
                    request.infer({0: feed})
                    times[path].append((time.perf_counter() - start) * 1000)
        dynamic_ms = float(np.median(times["dynamic"]))
        for path, values in times.items():
            median = float(np.median(values))
            rows.append(f"| {label} | {path} | {median:.2f} | {median / dynamic_ms:.2f}x |")

    lines = ["## OpenVINO: dynamic input shape vs a compile per shape (`benchmarks/bench_openvino_shapes.py`)", "",
             header, "", f"CPU: {this_cpu().summary()}. {args.threads} threads; shapes "
             + " and ".join(f"{s[2]}x{s[3]}" for s in SHAPES) + f" alternating, {args.rounds} rounds, "
             "interleaved paths; median forward pass per input (engine only).", "",
             "| model | path | median ms | x dynamic |", "|---|---|---|---|", *rows, "",
             "Compile of one static shape (and its first run): " + "; ".join(compile_notes) + "."]
    save_result(RESULTS_DIR / "openvino_shapes.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
