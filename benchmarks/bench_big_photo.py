"""Tiles per ONNX Runtime run (`TilingConfig.max_batch`): memory kept after a huge photo and the
time of a phone photo.

    .venv/bin/python benchmarks/bench_big_photo.py [--threads 2] [--rounds 3]

For each setting, a fresh process (ONNX Runtime's arena only grows) detects on a 1296x966 frame,
then on an 8000x8000 photo with tiling, hands the freed heap back (malloc_trim, as the server
does) and reports its resident memory before and after; the time of a 3264x2448 photo with
tiling is measured in one process per setting, the settings interleaved round by round.
Writes benchmarks/results/big_photo.md.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, RESULTS_DIR, provenance, save_result, stats_ms  # noqa: E402
from serving.detector import DetectOptions, Detector  # noqa: E402
from tests import images  # noqa: E402

SETTINGS = (16, 8, 4, 2, 1)


def resident_mb() -> float:
    return int(Path("/proc/self/status").read_text(encoding="utf-8").split("VmRSS:")[1].split()[0]) / 1024


def memory_probe(model: Path, max_batch: int, threads: int) -> dict[str, float]:
    """Run in a child process: RSS before and after an 8000x8000 photo at this max_batch."""
    detector = Detector(model, threads=threads)
    detector.tiling = dataclasses.replace(detector.tiling, max_batch=max_batch)
    detector.warmup()
    detector.detect(images.field_like(1296, 966))
    before = resident_mb()
    photo = cv2.resize(images.field_like(1000, 1000), (8000, 8000))
    detector.detect(photo, DetectOptions(tile="on"))
    del photo
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return {"before": before, "after": resident_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "weedscan.onnx")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--probe", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe is not None:
        print(json.dumps(memory_probe(args.model, args.probe, args.threads)))
        return

    memory = {}
    for max_batch in SETTINGS:
        out = subprocess.run([sys.executable, __file__, "--probe", str(max_batch), "--model", str(args.model),
                              "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        memory[max_batch] = json.loads(out.stdout.strip().splitlines()[-1])

    detectors = {}
    for max_batch in SETTINGS:
        detector = Detector(args.model, threads=args.threads)
        detector.tiling = dataclasses.replace(detector.tiling, max_batch=max_batch)
        detector.warmup()
        detectors[max_batch] = detector
    phone = images.field_like(3264, 2448, seed=5)
    times: dict[int, list[float]] = {m: [] for m in SETTINGS}
    for _ in range(args.rounds):
        for max_batch, detector in detectors.items():
            start = time.perf_counter()
            detector.detect(phone, DetectOptions(tile="on"))
            times[max_batch].append(time.perf_counter() - start)

    lines = ["## Tiles per run: memory after a huge photo, time of a phone photo "
             "(`benchmarks/bench_big_photo.py`)", "", provenance(), "",
             f"Model `{args.model.name}`, {args.threads} threads. Memory: a fresh process per setting, "
             "resident MB after a 1296x966 frame and after an 8000x8000 photo (tiled, heap trimmed). "
             f"Time: a 3264x2448 photo with tiling, {args.rounds} rounds interleaved.", "",
             "| tiles per run | RSS before MB | RSS after 8000x8000 MB | kept MB | 3264x2448 median ms |",
             "|---|---|---|---|---|"]
    for max_batch in SETTINGS:
        m = memory[max_batch]
        lines.append(f"| {max_batch} | {m['before']:.0f} | {m['after']:.0f} | {m['after'] - m['before']:.0f} "
                     f"| {stats_ms(times[max_batch])['median']:.0f} |")
    lines.append("")
    save_result(RESULTS_DIR / "big_photo.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
