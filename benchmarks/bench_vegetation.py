"""Vegetation mask vs CWFID's own per-pixel annotation, and plant-area vs box-area weed cover.

The masks come from the public repository cwfid/dataset (`annotations/NNN_annotation.png`: crop
green, weed red; `masks/NNN_mask.png`: the dataset's vegetation mask, 0 = plant), extracted for
the train and val images of ../shared/data/cwfid only (never its test split: `extract_masks`
refuses any number listed under `test` in the dataset's train_test_split.yaml) into the
git-ignored folder .cache/cwfid_masks. To reproduce:

    # 1. a bare git copy of github:cwfid/dataset (the agent `fetch` tool, or by hand:
    #    git clone --bare https://github.com/cwfid/dataset /work/.mirror/cwfid+dataset/repo/.git)
    # 2. extract the 39 train/val pairs and run (2 .png per image, `git show HEAD:path`):
    .venv/bin/python benchmarks/bench_vegetation.py \
        --extract-from /work/.mirror/cwfid+dataset/repo/.git --threads 1
    # later runs, masks already there:
    .venv/bin/python benchmarks/bench_vegetation.py --threads 1

Truth for the mask: annotated plant pixels (crop or weed). Weed cover truth: the share of the
image's pixels annotated weed. True-box rows use the CWFID labels on all train/val images, so that
only the cover definition differs; model-box rows use the shipped model's detections on the val
images only (the model trained on the train images). Writes benchmarks/results/vegetation.md.
"""

from __future__ import annotations

import argparse
import re
import subprocess
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


def _git_show(git_dir: Path, path: str) -> bytes:
    return subprocess.run(["git", "--git-dir", str(git_dir), "show", f"HEAD:{path}"],
                          capture_output=True, check=True).stdout


def extract_masks(git_dir: Path, out_dir: Path) -> tuple[str, int]:
    """Copy annotations/NNN_annotation.png and masks/NNN_mask.png out of a git copy of
    cwfid/dataset for the image numbers of ../shared/data/cwfid/images/{train,val} only; refuse
    any number in the dataset's test split. Returns (dataset commit, images extracted)."""
    split = _git_show(git_dir, "train_test_split.yaml").decode()
    match = re.search(r"^test:\s*\[([^\]]*)\]", split, re.M)
    if not match:
        sys.exit(f"no test split in {git_dir}:train_test_split.yaml")
    test = {int(v) for v in match.group(1).split(",") if v.strip()}
    numbers = sorted({p.stem.split("_")[1] for split_name in ("train", "val")
                      for p in (SHARED / "images" / split_name).glob("cwfid_*.png")})
    leaked = [n for n in numbers if int(n) in test]
    if leaked:
        sys.exit(f"refusing: images {', '.join(leaked)} are in CWFID's test split")
    out_dir.mkdir(parents=True, exist_ok=True)
    for number in numbers:
        for path in (f"annotations/{number}_annotation.png", f"masks/{number}_mask.png"):
            (out_dir / Path(path).name).write_bytes(_git_show(git_dir, path))
    commit = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()
    (out_dir / "SOURCE.txt").write_text(f"github.com/cwfid/dataset @ {commit}: annotations and "
                                        f"masks of images {' '.join(numbers)} (train/val only)\n", encoding="utf-8")
    return commit, len(numbers)


def label_boxes(path: Path, width: int, height: int) -> dict[int, np.ndarray]:
    label = path.parents[2] / "labels" / path.parent.name / f"{path.stem}.txt"
    rows = [[float(v) for v in line.split()] for line in label.read_text(encoding="utf-8").splitlines() if line.strip()]
    out: dict[int, list[list[float]]] = {0: [], 1: []}
    for cls, cx, cy, w, h in rows:
        out[int(cls)].append([(cx - w / 2) * width, (cy - h / 2) * height,
                              (cx + w / 2) * width, (cy + h / 2) * height])
    return {k: np.asarray(v, np.float32).reshape(-1, 4) for k, v in out.items()}


def weed_truth(annotation: np.ndarray) -> np.ndarray:
    return (annotation[..., 2] > 127) & (annotation[..., 1] < 128)  # red = weed (BGR)


def spread(values: list[float]) -> str:
    return f"{np.min(values):.3f} / {np.median(values):.3f} / {np.max(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--masks", type=Path, default=REPO / ".cache" / "cwfid_masks")
    parser.add_argument("--extract-from", type=Path, metavar="GIT_DIR",
                        help="git dir of a cwfid/dataset copy: extract the train/val masks into "
                             "--masks first (see the docstring)")
    parser.add_argument("--model", type=Path, default=REPO / "models" / "weedscan.onnx")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)  # the masks' OpenCV work too, like the model's threads

    if args.extract_from:
        commit, count = extract_masks(args.extract_from, args.masks)
        print(f"extracted masks of {count} train/val images from cwfid/dataset @ {commit} into {args.masks}")
    source = args.masks / "SOURCE.txt"
    source_note = source.read_text(encoding="utf-8").split(":")[0] if source.exists() else "github.com/cwfid/dataset"

    paths = sorted(SHARED.glob("images/*/cwfid_*.png"))
    samples = []
    for path in paths:
        number = path.stem.split("_")[1]
        annotation = cv2.imread(str(args.masks / f"{number}_annotation.png"))
        dataset_mask = cv2.imread(str(args.masks / f"{number}_mask.png"), cv2.IMREAD_GRAYSCALE)
        if annotation is None or dataset_mask is None:
            sys.exit(f"missing masks for {path.name} in {args.masks} (see this script's docstring)")
        samples.append((path, cv2.imread(str(path)), annotation, dataset_mask == 0))
    val = [s for s in samples if s[0].parent.name == "val"]
    header = provenance()

    lines = ["## Vegetation mask vs CWFID annotation (`benchmarks/bench_vegetation.py`)", "", header, "",
             f"{len(samples)} CWFID images (train {len(samples) - len(val)}, val {len(val)}; "
             f"1296x966), none of its test split; annotations and masks from {source_note}. "
             "Reproduce: fetch github:cwfid/dataset (a bare git copy), then `.venv/bin/python "
             "benchmarks/bench_vegetation.py --extract-from GIT_DIR --threads 1` (extracts the "
             "train/val masks into .cache/cwfid_masks, refuses test-split images, then runs). "
             "Truth: annotated crop or weed pixels. IoU and pixel accuracy are means over images; "
             "`vs dataset mask` is the IoU with CWFID's own vegetation mask (which also holds "
             f"unannotated plants). Time: the mask of one frame, median, {args.threads} OpenCV "
             f"thread{'s' if args.threads != 1 else ''}. CWFID is a red + "
             "near-infrared composite (R = B = red, G = NIR), so its soil is greenish: fixed "
             "thresholds set for RGB photos take soil for plants there; Otsu adapts.", "",
             "| index | threshold | resolution | IoU | pixel acc. | IoU vs dataset mask | ms |",
             "|---|---|---|---|---|---|---|"]
    per_image: dict[str, tuple[list[float], list[float]]] = {}
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
                if index == "exg" and mode == "auto" and work_side == 512:
                    per_image["exg, Otsu, long side 512 (mode=green)"] = (ious, accs)
                threshold = "Otsu" if mode == "auto" else f"{FIXED[index]:g}"
                resolution = "long side 512" if work_side else "full"
                lines.append(f"| {index} | {threshold} | {resolution} | {np.mean(ious):.3f} | "
                             f"{np.mean(accs):.3f} | {np.mean(ds_ious):.3f} | "
                             f"{stats_ms(times)['median']:.1f} |")

    # The cover mask mode=model computes (long side COVER_WORK_SIDE, not upsampled): compare it
    # with the truth downsampled to its size, and time it.
    ious, accs, cover_times = [], [], []
    for _, image, annotation, _ in samples:
        start = time.perf_counter()
        mask = vegetation_mask(image, COVER_OPTIONS, full_resolution=False).mask
        cover_times.append(time.perf_counter() - start)
        truth = cv2.resize(annotation.any(axis=2).astype(np.uint8) * 255, mask.shape[::-1],
                           interpolation=cv2.INTER_AREA) > 127
        ious.append((mask & truth).sum() / max(1, (mask | truth).sum()))
        accs.append((mask == truth).mean())
    per_image[f"exg, Otsu, long side {COVER_OPTIONS.work_side} (mode=model's cover mask; truth "
              "downsampled)"] = (ious, accs)
    names = [s[0].stem for s in samples]
    lines += ["", f"Spread over the {len(samples)} images (min / median / max; worst = the image "
              "with the lowest IoU):", "",
              "| mask | IoU | pixel acc. | worst |", "|---|---|---|---|"]
    for name, (ious, accs) in per_image.items():
        worst = int(np.argmin(ious))
        lines.append(f"| {name} | {spread(ious)} | {spread(accs)} | {names[worst]} "
                     f"(IoU {ious[worst]:.3f}) |")

    # Weed cover per image: |estimate - annotated weed pixel share|.
    rows: list[tuple[str, str, list[float]]] = []
    for subset, subset_name in ((samples, f"all {len(samples)}"), (val, f"val {len(val)}")):
        errors: dict[str, list[float]] = {"box": [], "coarse": [], **{i: [] for i in VEG_INDICES}}
        for path, image, annotation, _ in subset:
            height, width = image.shape[:2]
            true_cover = weed_truth(annotation).mean()
            boxes = label_boxes(path, width, height)
            errors["box"].append(abs(union_area(boxes[1]) / (width * height) - true_cover))
            for index in VEG_INDICES if subset is samples else ():
                mask = vegetation_mask(image, VegetationOptions(index)).mask
                errors[index].append(abs(plant_cover(mask, boxes[1], boxes[0]) - true_cover))
            mask = vegetation_mask(image, COVER_OPTIONS, full_resolution=False).mask
            errors["coarse"].append(abs(plant_cover(mask, boxes[1], boxes[0], (height, width))
                                        - true_cover))
        rows.append(("true boxes, box area (`weed_box_cover`)", subset_name, errors["box"]))
        if subset is samples:
            rows += [(f"true boxes, plant area, {i}, mask at long side 512", subset_name, errors[i])
                     for i in VEG_INDICES]
        rows.append((f"true boxes, plant area, exg, mask at long side {COVER_OPTIONS.work_side}",
                     subset_name, errors["coarse"]))

    detector = Detector(args.model, threads=args.threads)
    detector.warmup()
    model_box, model_plant, model_truth = [], [], []
    for _, image, annotation, _ in val:
        result = detector.detect(image)  # the service's defaults (conf from the card, tile auto)
        true_cover = weed_truth(annotation).mean()
        model_truth.append(true_cover)
        model_box.append(abs(result.weed_box_cover() - true_cover))
        model_plant.append(abs(result.weed_cover() - true_cover))
    rows += [(f"model boxes ({detector.model_path.name}), box area (`weed_box_cover`)",
              f"val {len(val)}", model_box),
             (f"model boxes ({detector.model_path.name}), plant area (`weed_cover`: what the "
              "service reports)", f"val {len(val)}", model_plant)]
    mean_truth = np.mean([weed_truth(s[2]).mean() for s in samples])
    lines += ["", f"Weed cover per image vs the annotated weed pixel share (mean {mean_truth:.4f} "
              f"over all {len(samples)}, {np.mean(model_truth):.4f} over val): mean and largest "
              "absolute error. Masks: Otsu threshold. True boxes = CWFID labels (train + val); "
              "model boxes = the shipped model's detections at the service's defaults, on the val "
              "images only (it trained on train):", "",
              "| cover | images | MAE | max error |", "|---|---|---|---|"]
    lines += [f"| {name} | {subset} | {np.mean(e):.4f} | {np.max(e):.4f} |" for name, subset, e in rows]

    # Latency per 1296x966 frame: vegetation regions vs the model.
    frames = [s[1] for s in samples[:8]]
    veg_times, model_times, mask_times = [], [], []
    for _ in range(3):
        for frame in frames:
            start = time.perf_counter()
            green_detect(frame, VegetationOptions("exg", min_area=50)).to_dict(lanes=4)
            veg_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            detector.detect(frame, DetectOptions(tile="off")).to_dict(lanes=4)
            model_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            vegetation_mask(frame, COVER_OPTIONS, full_resolution=False)
            mask_times.append(time.perf_counter() - start)
    v, m, c = stats_ms(veg_times), stats_ms(model_times), stats_ms(mask_times)
    lines += ["", f"Per 1296x966 frame ({len(frames)} frames x 3, interleaved, {args.threads} "
              f"thread{'s' if args.threads != 1 else ''} for ONNX Runtime and OpenCV):", "",
              "| what | median ms | p95 ms |", "|---|---|---|",
              "| mode=green (exg, Otsu, 512, min_area 50: regions, cover, lanes) "
              f"| {v['median']:.1f} | {v['p95']:.1f} |",
              f"| mode=model ({detector.model_path.name}: detect incl. plant cover, lanes) "
              f"| {m['median']:.1f} | {m['p95']:.1f} |",
              f"| of which the cover mask (exg, Otsu, long side {COVER_OPTIONS.work_side}; only "
              f"when a weed was found) | {c['median']:.1f} | {c['p95']:.1f} |", "",
              f"mode=green takes {v['median'] / m['median']:.2f}x the model's median time per "
              f"frame. The cover mask timed on its own over all {len(samples)} images: "
              f"median {stats_ms(cover_times)['median']:.1f} ms.", ""]
    save_result(RESULTS_DIR / "vegetation.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
