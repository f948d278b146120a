"""Candidate models side by side: val accuracy (from each card, i.e. `weedscan eval` at export)
and detector latency on a 1296x966 field frame, measured interleaved in one run.

    .venv/bin/python benchmarks/bench_models.py models/weedscan.onnx runs/cand/a.onnx ... [--rounds 20]

The first model is the reference for the latency ratio. Writes benchmarks/results/models.md
(or OUT.md with --out OUT).
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

FRAME = REPO.parent / "shared" / "data" / "cwfid" / "images" / "val"


def recipe_of(card: dict) -> str:
    recipe = card.get("training_recipe", {})
    start = (recipe.get("pretrained_start") or {}).get("file", "scratch")
    wall = recipe.get("wall_seconds")
    compute = f", {wall / 3600:.2f} h" if wall else ""
    return (f"{recipe.get('architecture')} @ {card.get('input_size')} from {start}, "
            f"{recipe.get('epochs_completed')} epochs{compute}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=cpu_count())
    parser.add_argument("--out", default="models", help="result name: benchmarks/results/OUT.md")
    parser.add_argument("--title", default="Candidate models", help="the section's heading")
    args = parser.parse_args()

    frame_path = sorted(FRAME.glob("*.png"))[0]
    frame = cv2.imread(str(frame_path))
    header = provenance()
    detectors = [Detector(path, threads=args.threads) for path in args.models]
    for detector in detectors:
        detector.warmup()
    times: list[list[float]] = [[] for _ in detectors]
    for _ in range(args.rounds):
        for i, detector in enumerate(detectors):  # interleaved: load changes hit every model
            start = time.perf_counter()
            detector.detect(frame, DetectOptions(tile="off"))
            times[i].append(time.perf_counter() - start)

    cards = [json.loads(d.model_path.with_suffix(".json").read_text(encoding="utf-8")) for d in detectors]
    datasets = sorted({name for card in cards for name in card.get("metrics", {})})
    reference = stats_ms(times[0])["median"]
    lines = [f"## {args.title} (`benchmarks/bench_models.py`)", "", header, "",
             f"Latency: the serving detector on one {frame.shape[1]}x{frame.shape[0]} CWFID frame "
             f"(`{frame_path.name}`), {args.rounds} interleaved rounds, {args.threads} threads. "
             "Accuracy: val splits, `weedscan eval` on the exported ONNX (the card).", "",
             "| model | recipe | median ms | p95 ms | x first | "
             + " | ".join(f"{d} mAP50 / mAP50-95" for d in datasets) + " |",
             "|---|---|---|---|---|" + "---|" * len(datasets)]
    for path, card, samples in zip(args.models, cards, times):
        latency = stats_ms(samples)
        scores = []
        for name in datasets:
            metric = card.get("metrics", {}).get(name)
            scores.append(f"{metric['mAP50']:.3f} / {metric['mAP50-95']:.3f}" if metric else "-")
        lines.append(f"| `{path.name}` | {recipe_of(card)} | {latency['median']:.1f} | "
                     f"{latency['p95']:.1f} | {latency['median'] / reference:.2f}x | "
                     + " | ".join(scores) + " |")
    text = "\n".join(lines) + "\n"
    save_result(RESULTS_DIR / f"{args.out}.md", text)
    print(text)


if __name__ == "__main__":
    main()
