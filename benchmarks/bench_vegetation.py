"""Vegetation mask vs CWFID's own per-pixel annotation, and plant-area vs box-area weed cover.

    .venv/bin/python benchmarks/bench_vegetation.py [--masks .cache/cwfid_masks]

The masks come from the public repository cwfid/dataset (`annotations/NNN_annotation.png`: crop
green, weed red; `masks/NNN_mask.png`: the dataset's vegetation mask, 0 = plant), extracted for
the train and val images of ../shared/data/cwfid only (never its test split) into a git-ignored
folder. Truth for the mask: annotated plant pixels (crop or weed). Weed cover truth: the share of
the image's pixels annotated weed; box cover and plant cover use the CWFID labels (true boxes) so
that only the cover definition differs. Writes benchmarks/results/vegetation.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, RESULTS_DIR, provenance, save_result, stats_ms  # noqa: E402
from serving.detector import COVER_OPTIONS, DetectOptions, Detector  # noqa: E402
from serving.geometry import union_area  # noqa: E402
from serving.green import green_detect  # noqa: E402
from serving.vegetation import VEG_INDICES, VegetationOptions, plant_cover, vegetation_mask  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "cwfid"
FIXED = {"exg": 0.1, "exgr": 0.0, "hsv": 0.0}  # Meyer & Neto's ExGR > 0; the HSV range itself


def label_boxes(path: Path, width: int, height: int) -> dict[int, np.ndarray]:
    label = path.parents[2] / "labels" / path.parent.name / f"{path.stem}.txt"
    rows = [[float(v) for v in line.split()] for line in label.read_text().splitlines() if line.strip()]
    out: dict[int, list[list[float]]] = {0: [], 1: []}
    for cls, cx, cy, w, h in rows:
        out[int(cls)].append([(cx - w / 2) * width, (cy - h / 2) * height,
                              (cx + w / 2) * width, (cy + h / 2) * height])
    return {k: np.asarray(v, np.float32).reshape(-1, 4) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--masks", type=Path, default=REPO / ".cache" / "cwfid_masks")
    parser.add_argument("--model", type=Path, default=REPO / "models" / "weedscan.onnx")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    paths = sorted(SHARED.glob("images/*/cwfid_*.png"))
    samples = []
    for path in paths:
        number = path.stem.split("_")[1]
        annotation = cv2.imread(str(args.masks / f"{number}_annotation.png"))
        dataset_mask = cv2.imread(str(args.masks / f"{number}_mask.png"), cv2.IMREAD_GRAYSCALE)
        if annotation is None or dataset_mask is None:
            sys.exit(f"missing masks for {path.name} in {args.masks} (see this script's docstring)")
        samples.append((path, cv2.imread(str(path)), annotation, dataset_mask == 0))
    header = provenance()

    lines = ["## Vegetation mask vs CWFID annotation (`benchmarks/bench_vegetation.py`)", "", header, "",
             f"{len(samples)} CWFID images (train {sum('train' in str(s[0]) for s in samples)}, "
             f"val {sum('val' in str(s[0]) for s in samples)}; 1296x966), none of its test split. "
             "Truth: annotated crop or weed pixels. IoU and pixel accuracy are means over images; "
             "`vs dataset mask` is the IoU with CWFID's own vegetation mask (which also holds "
             "unannotated plants). Time: the mask of one frame, median. CWFID is a red + "
             "near-infrared composite (R = B = red, G = NIR), so its soil is greenish: fixed "
             "thresholds set for RGB photos take soil for plants there; Otsu adapts.", "",
             "| index | threshold | resolution | IoU | pixel acc. | IoU vs dataset mask | ms |",
             "|---|---|---|---|---|---|---|"]
    for index in VEG_INDICES:
        for mode in ("auto", "fixed"):
            for work_side in (512, None):
                options = VegetationOptions(index, "auto" if mode == "auto" else FIXED[index],
                                            work_side=work_side)
                ious, accs, ds_ious, times = [], [], [], []
                for _, image, annotation, dataset_plant in samples:
                    truth = annotation.any(axis=2)
                    start = time.perf_counter()
                    mask = vegetation_mask(image, options).mask
                    times.append(time.perf_counter() - start)
                    ious.append((mask & truth).sum() / max(1, (mask | truth).sum()))
                    accs.append((mask == truth).mean())
                    ds_ious.append((mask & dataset_plant).sum() / max(1, (mask | dataset_plant).sum()))
                threshold = "Otsu" if mode == "auto" else f"{FIXED[index]:g}"
                resolution = "long side 512" if work_side else "full"
                lines.append(f"| {index} | {threshold} | {resolution} | {np.mean(ious):.3f} | "
                             f"{np.mean(accs):.3f} | {np.mean(ds_ious):.3f} | "
                             f"{stats_ms(times)['median']:.1f} |")

    # Weed cover: box area vs plant area, both from the true boxes.
    box_err, plant_err = {}, {}
    for index in VEG_INDICES:
        errors_box, errors_plant = [], []
        for path, image, annotation, _ in samples:
            height, width = image.shape[:2]
            truth = (annotation[..., 2] > 127) & (annotation[..., 1] < 128)  # red = weed
            true_cover = truth.mean()
            boxes = label_boxes(path, width, height)
            mask = vegetation_mask(image, VegetationOptions(index)).mask
            errors_box.append(abs(union_area(boxes[1]) / (width * height) - true_cover))
            errors_plant.append(abs(plant_cover(mask, boxes[1], boxes[0]) - true_cover))
        box_err[index], plant_err[index] = np.mean(errors_box), np.mean(errors_plant)
    coarse = []  # what model mode computes: exg, Otsu, the mask at long side COVER_WORK_SIDE
    for path, image, annotation, _ in samples:
        height, width = image.shape[:2]
        truth = (annotation[..., 2] > 127) & (annotation[..., 1] < 128)
        boxes = label_boxes(path, width, height)
        mask = vegetation_mask(image, COVER_OPTIONS, full_resolution=False).mask
        coarse.append(abs(plant_cover(mask, boxes[1], boxes[0], (height, width)) - truth.mean()))
    mean_truth = np.mean([((a[..., 2] > 127) & (a[..., 1] < 128)).mean() for _, _, a, _ in samples])
    lines += ["", f"Weed cover per image vs the annotated weed pixel share (mean {mean_truth:.4f}), "
              "boxes = CWFID labels, mask threshold Otsu at long side 512:", "",
              "| cover | MAE |", "|---|---|",
              f"| box area (`weed_box_cover`) | {box_err['exg']:.4f} |"]
    lines += [f"| plant area, {index} | {plant_err[index]:.4f} |" for index in VEG_INDICES]
    lines.append(f"| plant area, exg, mask at long side {COVER_OPTIONS.work_side} (what mode=model "
                 f"reports) | {np.mean(coarse):.4f} |")

    # Latency per 1296x966 frame: vegetation regions vs the model.
    detector = Detector(args.model, threads=args.threads)
    detector.warmup()
    frames = [s[1] for s in samples[:8]]
    veg_times, model_times = [], []
    for _ in range(3):
        for frame in frames:
            start = time.perf_counter()
            green_detect(frame, VegetationOptions("exg", min_area=50)).to_dict(lanes=4)
            veg_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            detector.detect(frame, DetectOptions(tile="off")).to_dict(lanes=4)
            model_times.append(time.perf_counter() - start)
    v, m = stats_ms(veg_times), stats_ms(model_times)
    lines += ["", f"Per 1296x966 frame ({len(frames)} frames x 3, interleaved, {args.threads} threads):", "",
              "| what | median ms | p95 ms |", "|---|---|---|",
              f"| mode=green (exg, Otsu, 512, min_area 50: regions, cover, lanes) | {v['median']:.1f} | {v['p95']:.1f} |",
              f"| mode=model ({detector.model_path.name}: detect incl. plant cover, lanes) | {m['median']:.1f} | {m['p95']:.1f} |", ""]
    save_result(RESULTS_DIR / "vegetation.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
