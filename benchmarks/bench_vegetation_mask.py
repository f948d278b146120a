"""What `?vegetation_mask=true` adds to a detect answer: bytes on the wire and the time to encode
the mask, against the photo's own bytes (which the page used to upload again per threshold).

    .venv/bin/python benchmarks/bench_vegetation_mask.py [--images 8] [--threads 2]

Photos: CWFID val images at their own size (1296x966) and resized to a phone photo's 3264x2448
(tiled by the server), when ../shared/data/cwfid is there; and a synthetic field at both sizes.
Answers at conf 0.05 (what the page asks), written as the server writes them (`wire_json`).
Writes benchmarks/results/vegetation_mask.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, RESULTS_DIR, provenance  # noqa: E402
from serving.answer import VegetationMaskRuns, wire_json  # noqa: E402
from serving.detector import DetectOptions, Detector  # noqa: E402
from tests import images  # noqa: E402

PHONE = (3264, 2448)
CWFID_VAL = REPO.parent / "shared" / "data" / "cwfid" / "images" / "val"


def photos(count: int) -> dict[str, list[np.ndarray]]:
    native = [cv2.imread(str(p)) for p in sorted(CWFID_VAL.glob("*.png"))[:count]]
    synthetic = [images.field_like(1296, 966, seed=s) for s in range(2)]
    found = {}
    if native:
        found["CWFID val, 1296x966"] = native
        found["CWFID val resized to 3264x2448 (tiled)"] = [cv2.resize(im, PHONE) for im in native]
    found["synthetic field, 1296x966"] = synthetic
    found["synthetic field, 3264x2448 (tiled)"] = [cv2.resize(im, PHONE) for im in synthetic]
    return found


def measure(detector: Detector, image: np.ndarray) -> dict[str, float]:
    jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].size
    result = detector.detect(image, DetectOptions(conf=0.05, cover="always"))
    plain = len(wire_json(result.answer()))
    with_mask = len(wire_json(result.answer(vegetation_mask=True)))
    assert result.vegetation is not None
    runs = []
    for _ in range(20):
        start = time.perf_counter()
        VegetationMaskRuns.of(result.vegetation)
        runs.append(time.perf_counter() - start)
    mask = VegetationMaskRuns.of(result.vegetation)
    return {"jpeg": jpeg, "plain": plain, "with_mask": with_mask, "runs": len(mask.counts),
            "side": f"{mask.width}x{mask.height}", "encode_ms": float(np.median(runs)) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    detector = Detector(REPO / "models" / "weedscan.onnx", threads=args.threads)
    rows = []
    for name, group in photos(args.images).items():
        found = [measure(detector, image) for image in group]
        median = {key: float(np.median([f[key] for f in found]))
                  for key in ("jpeg", "plain", "with_mask", "runs", "encode_ms")}
        rows.append(f"| {name} | {len(found)} | {found[0]['side']} | {median['jpeg'] / 1024:.0f} | "
                    f"{median['plain'] / 1024:.1f} | {median['with_mask'] / 1024:.1f} | "
                    f"{median['runs']:.0f} | {median['encode_ms']:.2f} |")
        print(rows[-1], flush=True)
    text = "\n".join([
        "## The plant mask in the detect answer (`vegetation_mask=true`)", "",
        f"`benchmarks/bench_vegetation_mask.py --images {args.images} --threads {args.threads}`; "
        f"{provenance()}.", "",
        "Medians per photo. Answer: the JSON the server sends at conf 0.05 (what the page asks), "
        "without and with the mask; runs: the numbers in `counts`; encode: run-length encoding "
        "the mask and building its model (the answer's cost), one thread. The photo's JPEG "
        "(quality 90) is what the page uploaded again for each threshold before it got the mask.",
        "",
        "| photos | n | mask | photo JPEG KiB | answer KiB | answer + mask KiB | runs | encode ms |",
        "|---|---|---|---|---|---|---|---|",
        *rows, ""])
    out = RESULTS_DIR / "vegetation_mask.md"
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
