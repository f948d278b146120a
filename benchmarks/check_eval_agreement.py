"""`weedscan eval` vs Ultralytics' `val` on the same ONNX model, per val split (a documented check;
tests/training/test_eval_agreement.py asserts the same).

    .venv/bin/python benchmarks/check_eval_agreement.py [--model models/weedscan.onnx]

Writes benchmarks/results/eval_agreement.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, RESULTS_DIR, provenance, save_result  # noqa: E402
from serving.detector import Detector  # noqa: E402
from training.agreement import ultralytics_val  # noqa: E402
from training.evaluate import evaluate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "weedscan.onnx")
    args = parser.parse_args()
    shared = REPO.parent / "shared" / "data"
    header = provenance()
    size = Detector(args.model).input_size
    rows = []
    for name in ("sesame", "cwfid"):
        data = shared / name / "data.yaml"
        ours = evaluate(args.model, [data]).card_metrics()[name]
        theirs = ultralytics_val(args.model, data, size)
        rows.append(f"| {name} | {ours['mAP50']:.4f} | {theirs['mAP50']:.4f} | "
                    f"{abs(ours['mAP50'] - theirs['mAP50']):.4f} | {ours['mAP50-95']:.4f} | "
                    f"{theirs['mAP50-95']:.4f} |")
    lines = ["## `weedscan eval` vs `yolo val` (`benchmarks/check_eval_agreement.py`)", "", header, "",
             f"Model `{args.model.name}`, val splits. Target: mAP50 within 0.02.", "",
             "| split | weedscan eval mAP50 | yolo val mAP50 | difference | weedscan mAP50-95 | yolo val mAP50-95 |",
             "|---|---|---|---|---|---|", *rows, "",
             "`yolo val` keeps a box once per class above conf (multi-label NMS) and shrinks with "
             "INTER_AREA; `weedscan eval` scores the served detector's single-label answer (see "
             "tests/training/test_eval_agreement.py for what each difference is worth).", ""]
    save_result(RESULTS_DIR / "eval_agreement.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
