"""fp32 vs bf16 autocast for a training step on this CPU (forward + backward, batch 16).

    .venv/bin/python benchmarks/bench_train_precision.py [--imgsz 416] [--iters 3]

Decides `weedscan train`'s bf16 default: bf16 only pays where the CPU has native bf16 arithmetic.
Writes benchmarks/results/train_precision.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS_DIR, provenance, save_result  # noqa: E402


def total(value: Any) -> Any:  # noqa: ANN401 - nested tensors of the detect head
    import torch

    if isinstance(value, torch.Tensor):
        return value.float().sum()
    if isinstance(value, dict):
        return sum(total(v) for v in value.values())
    return sum(total(v) for v in value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--imgsz", type=int, default=416)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from training.bf16 import cpu_has_native_bf16
    from training.offline import import_ultralytics

    import_ultralytics()
    import torch
    from ultralytics.nn.tasks import DetectionModel

    torch.set_num_threads(args.threads)
    header = provenance()
    rows = []
    for arch in ("yolo26n.yaml", "yolov8n.yaml"):
        model = DetectionModel(arch, nc=2, verbose=False).train()
        batch = torch.rand(16, 3, args.imgsz, args.imgsz)
        seconds = {}
        for mode in ("fp32", "bf16", "fp32", "bf16"):  # interleaved: load changes hit both
            start = time.perf_counter()
            for _ in range(args.iters):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
                    out = model.predict(batch)
                total(out).backward()
            seconds.setdefault(mode, []).append((time.perf_counter() - start) / args.iters)
        fp32, bf16 = min(seconds["fp32"]), min(seconds["bf16"])
        rows.append(f"| {arch} | {fp32:.2f} | {bf16:.2f} | {fp32 / bf16:.2f}x |")
    lines = ["## Training step precision (`benchmarks/bench_train_precision.py`)", "", header, "",
             f"Forward + backward, batch 16 at {args.imgsz}, {args.threads} threads; best of two "
             f"interleaved passes of {args.iters} iterations. Native bf16 on this CPU: "
             f"{cpu_has_native_bf16()}.", "",
             "| model | fp32 s/iter | bf16 s/iter | bf16 speed-up |", "|---|---|---|---|", *rows, ""]
    save_result(RESULTS_DIR / "train_precision.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
