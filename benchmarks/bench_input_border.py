"""The grey frame round each image (the card's `input_border`): accuracy with and without it on
each dataset's val and test splits (`weedscan eval`, the served detector), and detector latency
on a 1296x966 field frame and a 512x512 sesame image, measured interleaved in one run.

    .venv/bin/python benchmarks/bench_input_border.py models/weedscan.onnx \
        --data ../shared/data/sesame --data ../shared/data/cwfid --data data/potato-uav [--borders 0 16]

Writes benchmarks/results/input_border.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, RESULTS_DIR, provenance, save_result, stats_ms  # noqa: E402
from serving.config import cpu_count  # noqa: E402
from serving.detector import DetectOptions, Detector  # noqa: E402
from training.evaluate import evaluate  # noqa: E402
from training.trainset import YoloDataset  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
FRAMES = {"1296x966 CWFID frame": SHARED / "cwfid" / "images" / "val",
          "512x512 sesame image": SHARED / "sesame" / "images" / "val"}


def scores(model: Path, data_yamls: list[Path], borders: list[int]) -> list[str]:
    """One table row per dataset split: mAP50 / mAP50-95 at each border."""
    rows = []
    for split in ("val", "test"):
        yamls = [y for y in data_yamls if YoloDataset.from_yaml(y).splits.get(split)]
        if not yamls:
            continue
        by_border = {b: evaluate(model, yamls, split, input_border=b).card_metrics() for b in borders}
        for name in by_border[borders[0]]:
            cells = [f"{by_border[b][name]['mAP50']:.3f} / {by_border[b][name]['mAP50-95']:.3f}" for b in borders]
            gain = by_border[borders[-1]][name]["mAP50"] - by_border[borders[0]][name]["mAP50"]
            images = by_border[borders[0]][name]["images"]
            rows.append(f"| {name} | {split} | {images} | " + " | ".join(cells) + f" | {gain:+.3f} |")
    return rows


def latency(model: Path, borders: list[int], rounds: int, threads: int) -> list[str]:
    detectors = {b: Detector(model, threads=threads, input_border=b) for b in borders}
    rows = []
    for label, folder in FRAMES.items():
        frame = cv2.imread(str(sorted(p for p in folder.iterdir() if p.suffix in {".png", ".jpeg", ".jpg"})[0]))
        for detector in detectors.values():
            detector.warmup()
        times: dict[int, list[float]] = {b: [] for b in borders}
        for _ in range(rounds):
            for border, detector in detectors.items():  # interleaved: load changes hit both
                start = time.perf_counter()
                detector.detect(frame, DetectOptions(tile="off"))
                times[border].append(time.perf_counter() - start)
        reference = stats_ms(times[borders[0]])["median"]
        for border in borders:
            median = stats_ms(times[border])["median"]
            rows.append(f"| {label} | {border} | {median:.1f} | {median / reference:.2f}x |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, action="append", required=True, help="dataset folder or data.yaml")
    parser.add_argument("--borders", type=int, nargs="+", default=[0, 16])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=cpu_count())
    args = parser.parse_args()
    data_yamls = [d / "data.yaml" if d.is_dir() else d for d in args.data]

    header = provenance()
    accuracy = scores(args.model, data_yamls, args.borders)
    timing = latency(args.model, args.borders, args.rounds, args.threads)
    borders = " | ".join(f"border {b} mAP50 / mAP50-95" for b in args.borders)
    lines = ["## Input border (`benchmarks/bench_input_border.py`)", "", header, "",
             f"Model `{args.model.name}`; the image is fitted inside input_size - 2 x border and "
             "the rest is grey (114), as Ultralytics' validator pads its val batches (the ones that "
             "choose best.pt). Test splits: those of the imported sets (the CWFID official test split "
             "is kept for independent testing, sesame here has none).", "",
             f"| dataset | split | images | {borders} | mAP50 gain |",
             "|---|---|---|" + "---|" * len(args.borders) + "---|", *accuracy, "",
             f"Detector latency, {args.rounds} interleaved rounds, {args.threads} threads:", "",
             "| image | border | median ms | x border 0 |", "|---|---|---|---|", *timing]
    save_result(RESULTS_DIR / "input_border.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
