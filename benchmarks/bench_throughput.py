"""Throughput under concurrency against the bare ONNX Runtime loop, with frame micro-batching
on and off, side by side in one run:

  bare loop      decode + letterbox + session.run, one image after another, in this process
  HTTP 8 clients 8 keep-alive clients back to back against `weedscan serve`,
                 one server per WEEDSCAN_MAX_FRAME_BATCH of --batches (2, the default; 4; 1: off)
  HTTP 1 client  the same images one at a time (single-client latency must not get worse)

    .venv/bin/python benchmarks/bench_throughput.py [--rounds 5] [--threads 2]

The paths take turns within each round (the order rotating), so a slow spell of this shared
machine hits all of them. Writes benchmarks/results/throughput.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_serving import HttpPath, concurrent_http, decode, load_images  # noqa: E402
from benchmarks.common import REPO, RESULTS_DIR, provenance, rss_mb, save_result, stats_ms  # noqa: E402
from serving.config import cpu_count  # noqa: E402
from serving.detector import Detector  # noqa: E402
from serving.preprocess import letterbox, to_blob  # noqa: E402
from tests.serving.conftest import LiveServer  # noqa: E402


def bare_loop_path(model: Path, threads: int):  # noqa: ANN201 - a callable
    """decode, letterbox as the server does (padded to the stride only), session.run."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    probe = Detector(model, threads=1)
    size, stride, border = probe.input_size, probe.frame_stride, probe.input_border
    return lambda data, _media: session.run(
        None, {name: to_blob([letterbox(decode(data), size, stride, border)[0]])})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "weedscan.onnx")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=cpu_count())
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 4, 1],
                        help="WEEDSCAN_MAX_FRAME_BATCH of each server")
    args = parser.parse_args()
    BATCHES = tuple(args.batches)  # noqa: N806 - the settings compared

    images = load_images(args.images)
    header = provenance()
    bare = bare_loop_path(args.model, args.threads)
    servers = {b: LiveServer(args.model, env={"WEEDSCAN_THREADS": str(args.threads),
                                              "WEEDSCAN_MAX_INFLIGHT": "64",
                                              "WEEDSCAN_MAX_FRAME_BATCH": str(b)}) for b in BATCHES}
    rates: dict[str, list[float]] = {"bare": [], **{f"http8 batch {b}": [] for b in BATCHES}}
    single: dict[int, list[float]] = {b: [] for b in BATCHES}
    try:
        singles = {b: HttpPath(s.port) for b, s in servers.items()}

        def bare_loop() -> None:
            start = time.perf_counter()
            for _, data, media in images * 2:
                bare(data, media)
            rates["bare"].append(2 * len(images) / (time.perf_counter() - start))

        def http8(batch: int) -> None:
            latencies, wall = concurrent_http(servers[batch].port, images, 1, 8)
            rates[f"http8 batch {batch}"].append(len(latencies) / wall)

        def http1(batch: int) -> None:
            for _, data, media in images:
                start = time.perf_counter()
                singles[batch](data, media)
                single[batch].append(time.perf_counter() - start)

        steps = [bare_loop, *(lambda b=b: http8(b) for b in BATCHES), *(lambda b=b: http1(b) for b in BATCHES)]
        for step in steps:  # warm-up round, not kept
            step()
        for key in rates:
            rates[key].clear()
        for batch in BATCHES:
            single[batch].clear()
        for round_ in range(args.rounds):
            shift = round_ % len(steps)
            for step in steps[shift:] + steps[:shift]:
                time.sleep(0.1)
                step()
        rss = {b: rss_mb(s.process.pid) for b, s in servers.items()}
    finally:
        for server in servers.values():
            server.stop()

    floor = float(np.median(rates["bare"]))
    lines = ["## Throughput under concurrency vs the bare ONNX Runtime loop (`benchmarks/bench_throughput.py`)",
             "", header, "",
             f"Model `{args.model.name}`, {args.threads} inference threads, {len(images)} val images "
             f"(sesame JPEG, CWFID as JPEG), {args.rounds} rounds, paths interleaved. Bare loop: decode + "
             "letterbox (to the stride, as the server) + session.run one after another in one process. "
             "8 clients: 8 keep-alive connections back to back, each sending every image once per round.", "",
             "| path | images/s (median of rounds) | x bare loop | min - max |", "|---|---|---|---|"]
    for key, values in rates.items():
        lines.append(f"| {key} | {np.median(values):.1f} | {np.median(values) / floor:.3f} | "
                     f"{min(values):.1f} - {max(values):.1f} |")
    lines += ["", "Single client, one image at a time (median ms / p95 ms):", "",
              "| WEEDSCAN_MAX_FRAME_BATCH | median ms | p95 ms | server RSS at the end, MB |",
              "|---|---|---|---|"]
    for batch in BATCHES:
        s = stats_ms(single[batch])
        lines.append(f"| {batch} | {s['median']:.1f} | {s['p95']:.1f} | {rss[batch]:.0f} |")
    lines.append("")
    save_result(RESULTS_DIR / "throughput.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
