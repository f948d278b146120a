"""What asking for every box costs on a tiled photo: a 3264x2448 photo (21 model runs) against a
real `weedscan serve`, plainly and with `conf=0&max_det=1000` (iou 1 and 0.99), best of a few
requests each, alternating. tests/robustness/test_merge_cost.py checks that the merge compares
only the surest boxes; this measures the time.

    .venv/bin/python benchmarks/bench_merge_cost.py [--rounds 3]

Writes benchmarks/results/merge_cost.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from benchmarks.common import RESULTS_DIR, provenance, save_result
from tests import images
from tests.conftest import SHIPPED_MODEL
from tests.serving.conftest import LiveServer

PHOTO = images.encode(images.field_like(3264, 2448), ".jpg")
ASKS = {"plain": {}, "every box, iou=1": {"conf": 0, "iou": 1, "max_det": 1000},
        "every box, iou=0.99": {"conf": 0, "iou": 0.99, "max_det": 1000}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    best = dict.fromkeys(ASKS, float("inf"))
    server = LiveServer(SHIPPED_MODEL)
    try:
        for _ in range(args.rounds):
            for name, params in ASKS.items():
                start = time.perf_counter()
                httpx.post(f"{server.url}/v1/detect", params=params, content=PHOTO, timeout=300,
                           headers={"Content-Type": "image/jpeg"}).raise_for_status()
                best[name] = min(best[name], time.perf_counter() - start)
    finally:
        server.stop()
    rows = [f"| {name} | {seconds:.2f} | {seconds / best['plain']:.2f} |" for name, seconds in best.items()]
    text = "\n".join([
        "## Every box on a tiled photo: cost against a plain request", "",
        provenance() + f"; 3264x2448 JPEG, best of {args.rounds} alternating requests each.", "",
        "| request | seconds | x plain |", "|---|---|---|", *rows, ""])
    save_result(RESULTS_DIR / "merge_cost.md", text)
    print(text)


if __name__ == "__main__":
    main()
