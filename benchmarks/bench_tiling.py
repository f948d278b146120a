"""Big photos: accuracy and time of tiled detection on mosaics of val images.

    .venv/bin/python benchmarks/bench_tiling.py [--model models/weedscan.onnx] [--rounds 3]

Val images are stitched with their labels into large frames (sesame: 6 x 5 cells of 512 px,
3072 x 2560, about a phone photo; CWFID: 3 x 3 frames of 1296 x 966, 3888 x 2898), then scored
with tiling on for each setting tried (tile side as a multiple of the model input, overlap).
The reference is the same model on the plain val images (tiling off): "no loss" means the
mosaics score as well. Time is the detector's on a 3264 x 2448 crop of a sesame mosaic.
Writes benchmarks/results/tiling.md.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, RESULTS_DIR, provenance, save_result, stats_ms  # noqa: E402
from serving.detections import Detections  # noqa: E402
from serving.detector import DetectOptions, Detector, TilingConfig  # noqa: E402
from serving.geometry import classwise_nms  # noqa: E402
from serving.tiling import TileSlicer, tile_windows  # noqa: E402
from training.evaluate import EVAL_CONF, EVAL_IOU, ImageStats, match, read_labels, summarize  # noqa: E402
from training.trainset import YoloDataset, labels_folder  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
GRIDS = {"sesame": (6, 5), "cwfid": (3, 3)}  # columns, rows
# (tile_scale, overlap)
SETTINGS = [(1.25, 0.2), (1.6, 0.2), (2.0, 0.2), (2.0, 0.1), (3.0, 0.2), (4.0, 0.2), (4.0, 0.1)]
PHOTO = (3264, 2448)


def labelled_val(name: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    dataset = YoloDataset.from_yaml(SHARED / name)
    labels = labels_folder(dataset.splits["val"])
    found = []
    for path in dataset.images("val"):
        image = cv2.imread(str(path))
        classes, boxes = read_labels(labels / path.relative_to(dataset.splits["val"]).with_suffix(".txt"),
                                     image.shape[1], image.shape[0])
        found.append((image, classes, boxes))
    return found


def mosaics(items: list, columns: int, rows: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every val image once (the last mosaic wraps around to fill its cells)."""
    height, width = items[0][0].shape[:2]
    per = columns * rows
    out = []
    for first in range(0, len(items), per):
        canvas = np.zeros((rows * height, columns * width, 3), np.uint8)
        classes, boxes = [], []
        for cell in range(per):
            image, cls, box = items[(first + cell) % len(items)]
            y, x = divmod(cell, columns)
            canvas[y * height:(y + 1) * height, x * width:(x + 1) * width] = image
            classes.append(cls)
            boxes.append(box + np.array([x * width, y * height] * 2, np.float32))
        out.append((canvas, np.concatenate(classes), np.concatenate(boxes)))
    return out


def score(detector: Detector, frames: list, tile: str) -> float:
    stats = []
    for i, (image, gt_cls, gt_boxes) in enumerate(frames):
        dets = detector.detect(image, DetectOptions(conf=EVAL_CONF, iou=EVAL_IOU, max_det=1000,
                                                    tile=tile)).detections
        stats.append(ImageStats(match(dets.boxes, dets.class_ids, gt_boxes, gt_cls), dets.scores,
                                dets.class_ids, gt_cls, dets.boxes, gt_boxes, f"frame{i}"))
    return summarize(stats, detector.class_names, detector.default_conf).mAP50


@contextlib.contextmanager
def nms_only_merge() -> Iterator[None]:
    """The merge before the seam-aware slicer: class-wise NMS over all windows' boxes."""
    original = TileSlicer.merge
    TileSlicer.merge = lambda self, parts, windows, width, height, iou, max_det: classwise_nms(  # type: ignore[method-assign]
        Detections.concat(parts), iou, max_det)
    try:
        yield
    finally:
        TileSlicer.merge = original  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "weedscan.onnx")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    header = provenance()
    plain = {name: labelled_val(name) for name in GRIDS}
    big = {name: mosaics(items, *GRIDS[name]) for name, items in plain.items()}
    photo = big["sesame"][0][0][:PHOTO[1], :PHOTO[0]]
    photo = cv2.copyMakeBorder(photo, 0, PHOTO[1] - photo.shape[0], 0, PHOTO[0] - photo.shape[1],
                               cv2.BORDER_REFLECT)
    reference = Detector(args.model)
    rows = [("plain val images (tiling off)", "-",
             {name: score(reference, [(i, c, b) for i, c, b in items], "off") for name, items in plain.items()},
             None, None)]
    rows.append(("mosaics, whole frame only (tiling off)", "1",
                 {name: score(reference, frames, "off") for name, frames in big.items()}, None, None))
    with nms_only_merge():
        baseline = Detector(args.model)  # default tiling, the tiles' boxes merged by NMS alone
        rows.append(("default tiles, merged by NMS only (before the seam merge)", "-",
                     {name: score(baseline, frames, "on") for name, frames in big.items()}, None, None))
    for tile_scale, overlap in SETTINGS:
        detector = Detector(args.model, tiling=TilingConfig(tile_scale=tile_scale, overlap=overlap))
        detector.warmup()
        side = round(detector.input_size * tile_scale)
        windows = len(tile_windows(PHOTO[0], PHOTO[1], side, overlap)) + 1
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            detector.detect(photo, DetectOptions(tile="on"))
            times.append(time.perf_counter() - start)
        rows.append((f"tiles of {side} px ({tile_scale:g}x input), overlap {overlap:g}", str(windows),
                     {name: score(detector, frames, "on") for name, frames in big.items()},
                     stats_ms(times)["median"], stats_ms(times)["p95"]))

    names = list(GRIDS)
    lines = ["## Big photos: tiled detection (`benchmarks/bench_tiling.py`)", "", header, "",
             f"Model `{args.model.name}` (input {reference.input_size}). Mosaics of the val images with "
             f"their labels: sesame {GRIDS['sesame'][0]}x{GRIDS['sesame'][1]} cells of 512 px "
             f"({len(big['sesame'])} frames), CWFID {GRIDS['cwfid'][0]}x{GRIDS['cwfid'][1]} frames "
             f"({len(big['cwfid'])} frames). Time: detector on one {PHOTO[0]}x{PHOTO[1]} photo, "
             f"median of {args.rounds} (decode not included).", "",
             "| setting | windows on the photo | " + " | ".join(f"{n} mAP50" for n in names)
             + " | photo median ms | photo p95 ms |", "|---|---|" + "---|" * len(names) + "---|---|"]
    for label, windows, scores, median, p95 in rows:
        lines.append(f"| {label} | {windows} | " + " | ".join(f"{scores[n]:.3f}" for n in names)
                     + f" | {f'{median:.0f}' if median else '-'} | {f'{p95:.0f}' if p95 else '-'} |")
    text = "\n".join(lines) + "\n"
    save_result(RESULTS_DIR / "tiling.md", text)
    print(text)


if __name__ == "__main__":
    main()
