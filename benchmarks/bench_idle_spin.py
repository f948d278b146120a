"""CPU an idle detector uses right after a run: ONNX Runtime's worker threads busy-wait for the
next run by default (`idle_spin=True`, kept for back-to-back batch runs); the server turns that
off (`idle_spin=False`). ONNX Runtime's engine (OpenVINO's threads sleep between runs already).
Both detectors side by side, alternating, in one process.

    .venv/bin/python benchmarks/bench_idle_spin.py --rounds 20

Writes benchmarks/results/idle_spin.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from benchmarks.common import REPO, RESULTS_DIR, provenance
from serving.detector import Detector
from tests import images


def cpu_after_a_run(detector: Detector, frame: object, window_s: float) -> float:
    """CPU seconds this whole process (its threads included) uses in `window_s` after one run."""
    detector.detect(frame)
    start = time.process_time()
    time.sleep(window_s)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "weedscan.onnx")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--window", type=float, default=0.2, help="seconds watched after each run")
    args = parser.parse_args()
    detectors = {
        "resting (idle_spin=False, the server)": Detector(args.model, threads=args.threads, idle_spin=False,
                                                          engine="onnxruntime"),
        "spinning (idle_spin=True, the default)": Detector(args.model, threads=args.threads, engine="onnxruntime"),
    }
    frame = images.field_like(640, 480)
    for detector in detectors.values():
        detector.warmup()
    time.sleep(0.3)  # the warm-ups' own spinning is over
    cpu: dict[str, list[float]] = {name: [] for name in detectors}
    for _ in range(args.rounds):
        for name, detector in detectors.items():
            cpu[name].append(cpu_after_a_run(detector, frame, args.window))
            time.sleep(0.1)
    rows = [f"| {name} | {1000 * statistics.median(v):.1f} | {1000 * max(v):.1f} |" for name, v in cpu.items()]
    text = "\n".join([
        "## Idle ONNX Runtime threads: CPU after a run", "",
        provenance() + f"; {args.threads} threads, {args.rounds} alternating rounds, "
        f"{args.window:.2f} s watched after each 640x480 run.", "",
        "| detector | CPU ms in the window, median | max |", "|---|---|---|", *rows, ""])
    (RESULTS_DIR / "idle_spin.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
