"""Quantization-aware fine-tuning of the shipped model, against post-training int8 with accuracy control.

    flock /tmp/weedscan-cpu.lock .venv/bin/python benchmarks/trial_qat.py \\
        --data ../shared/data/sesame/data.yaml ../shared/data/cwfid/data.yaml \\
               /work/data/potato-uav/data.yaml /work/data/sugarbeet-jmpap/data.yaml \\
        [--epochs 2] [--lr 1e-5] [--float stem] [--max-batches N] [--out-dir /tmp/qat]
    .venv/bin/python benchmarks/trial_qat.py --latency-of "LABEL=MODEL.onnx" ...   # variants side by side

What it does, on the model's own weights (rebuilt from models/weedscan.onnx into PyTorch, BatchNorm
folded into the convolutions as the export has it):

1. NNCF's PyTorch backend inserts fake-quantizers (int8 weights per channel, int8 activations,
   preset mixed), calibrated on about --calib training images letterboxed as served. The head's
   decoding (DFL, anchors, class sigmoid) stays in float, and with `--float stem` the first three
   blocks too: the same float layers the shipped variant started from.
2. Epoch 0 is that model untrained: plain post-training quantization on the PyTorch side, the control.
3. It then trains --epochs over the four fields' training splits with Ultralytics' data pipeline and
   loss (the recipe's augmentation, mosaic halved), Adam at --lr, batch --batch, every batch a step.
4. After each epoch, the model is converted to an OpenVINO IR (FakeQuantize) and served as the
   model's int8 variant from a copy of the model folder: scored on the val splits through the
   serving code, and its forward pass timed, exactly as `weedscan precision` checks a variant.

The shipped model and its card are not touched. Writes benchmarks/results/qat.md and qat.json.
Each attempt's latency is measured when it is scored, so a busy spell skews one row: --latency-of
times the variants of model folders (each epoch's is left in --out-dir/epoch-N) side by side.

PyTorch's C++ extension for NNCF's fake-quantizers is compiled on first use into
~/.cache/torch_extensions (set NNCF_EXTENSION_LOAD_TIMEOUT=0 on a slow machine).
"""

from __future__ import annotations

import os

# Nothing may go to the network: NNCF's and OpenVINO's telemetry off before either is imported.
os.environ["OPENVINO_TELEMETRY_OPT_OUT"] = "1"
os.environ["NNCF_CI"] = "1"
os.environ["CI"] = "true"

import argparse
import copy
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, RESULTS_DIR, provenance, save_result
from serving.detector import Detector
from serving.engines.cpu import this_cpu
from serving.model_card import ModelVariant, load_card, sha256_of, variant_file_names, write_card
from training.evaluate import evaluate
from training.precision import check_precisions, forward_latency_ms, map50_of
from training.quantize_openvino import calibration_images, import_nncf, served_inputs
from training.trainset import build_training_set


class Attempt(BaseModel):
    """One int8 model scored as a served variant."""

    label: str
    epochs: int
    map50: dict[str, float]
    change: dict[str, float]  # against ONNX Runtime fp32 of the shipped model
    worst: float
    latency_ms: float
    train_seconds: float = 0.0
    mean_loss: float | None = None


class TrialResult(BaseModel):
    float_layers: str
    epochs: int
    lr: float
    batch: int
    calibration_inputs: int
    batches_per_epoch: int
    reference: dict[str, float]
    reference_latency_ms: float
    shipped_variant: Attempt
    attempts: list[Attempt]


def rebuilt_model(model_path: Path, calibration: list[Path]) -> Any:
    from training.pretrained import rebuild_from_onnx

    model, _ = rebuild_from_onnx(model_path, calibration)
    model = model.float().eval()
    model.fuse(verbose=False)  # as exported: every BatchNorm folded into its convolution
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model


def float_scope(model: Any, nncf: Any, keep: str) -> Any:
    """The layers left in float: the head's decoding (every operation traced after the head's
    last convolution), and with keep == 'stem' every operation of /model.0/-/model.2/ (traced
    before /model.3/'s convolution, the third top-level `conv/conv2d`). NNCF's PyTorch graph
    names nodes by call order within a module type, not by module index, hence the positions."""
    import torch
    from nncf.torch import wrap_model
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph

    example = torch.zeros(1, 3, 416, 416)
    traced = wrap_model(copy.deepcopy(model), example, trace_parameters=True).model
    names = [node.node_name for node in build_nncf_graph(traced, example).get_all_nodes()]
    head_convs = [i for i, n in enumerate(names) if re.fullmatch(r"2/conv2d/\d+", n)]
    ignored = names[head_convs[-1] + 1:]
    if keep == "stem":
        ignored += names[:names.index("conv/conv2d/2")]
    return nncf.IgnoredScope(names=ignored, validate=False)


def export_variant(model: Any, folder: Path, name: str, label: str) -> None:
    """The fake-quantized model as an OpenVINO IR int8 variant of folder/name.onnx (card updated)."""
    import openvino as ov
    import torch

    model.eval()
    head = model.model[-1]
    head.export, head.format, head.dynamic = True, "openvino", True
    with torch.no_grad():
        converted = ov.convert_model(model, example_input=torch.zeros(1, 3, 416, 416),
                                     input=[ov.PartialShape([-1, 3, -1, -1])])
    head.export, head.dynamic = False, False
    graph_name, weights_name = variant_file_names(name, "openvino", "int8")
    ov.save_model(converted, str(folder / graph_name), compress_to_fp16=False)
    model_path = folder / f"{name}.onnx"
    card = load_card(model_path)
    variant = ModelVariant(engine="openvino", precision="int8", file=graph_name,
                           sha256=sha256_of(folder / graph_name), weights_file=weights_name,
                           weights_sha256=sha256_of(folder / weights_name), source_sha256=card.sha256,
                           method={"quantizer": "NNCF PyTorch fake-quantizers, quantization-aware trial",
                                   "trial": label})
    write_card(model_path, card.model_copy(update={"variants": [variant], "precision_checks": []}))


def score_variant(model_path: Path, data: list[Path], threads: int, reference: dict[str, float],
                  label: str, epochs: int) -> Attempt:
    """The model's int8 variant scored and timed as `weedscan precision` checks one."""
    check = check_precisions(model_path, data, "val", threads, reference_map50=reference,
                             combinations=[("openvino", "int8")])[0]
    change = {split: round(check.map50[split] - reference[split], 4) for split in check.map50}
    return Attempt(label=label, epochs=epochs, map50=check.map50, change=change,
                   worst=min(change.values()), latency_ms=check.latency_ms)


def export_and_score(model: Any, folder: Path, name: str, out_dir: Path, data: list[Path], threads: int,
                     reference: dict[str, float], label: str, epochs: int) -> Attempt:
    """Export the fake-quantized model as the variant of folder/name.onnx, keep a copy of the
    folder as out_dir/epoch-N, and score it."""
    export_variant(model, folder, name, f"epoch {epochs}")
    shutil.copytree(folder, out_dir / f"epoch-{epochs}")
    return score_variant(folder / f"{name}.onnx", data, threads, reference, label, epochs)


def train_loader(data: list[Path], out_dir: Path, batch: int, imgsz: int,
                 repeats: dict[str, int]) -> tuple[Any, Any]:
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    data_yaml = build_training_set(data, out_dir / "trainset", repeats=repeats)
    cfg = get_cfg(overrides={"imgsz": imgsz, "batch": batch, "workers": 0, "mosaic": 0.5,
                             "flipud": 0.5, "fliplr": 0.5, "hsv_s": 0.6, "degrees": 0.0})
    dataset_info = check_det_dataset(str(data_yaml))
    dataset = build_yolo_dataset(cfg, dataset_info["train"], batch, dataset_info, mode="train", stride=32)
    return cfg, build_dataloader(dataset, batch, workers=0, shuffle=True)


def train_epoch(model: Any, loader: Any, optimizer: Any, max_batches: int | None) -> tuple[float, int]:
    model.train()
    losses = []
    for index, batch in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            break
        batch["img"] = batch["img"].float() / 255
        loss, _ = model.loss(batch)
        optimizer.zero_grad()
        loss.sum().backward()
        optimizer.step()
        losses.append(float(loss.sum()))
    model.eval()
    return float(np.mean(losses)), len(losses)


def markdown(result: TrialResult, header: str) -> str:
    splits = list(result.reference)
    stem = " and the stem (/model.0-2/)" if result.float_layers == "stem" else ""
    lines = [header, "",
             f"Float layers: the head's decoding{stem}; "
             f"{result.calibration_inputs} calibration inputs; Adam lr {result.lr}, batch {result.batch}, "
             f"{result.batches_per_epoch} batches an epoch. mAP50 per val split through the serving code, in brackets "
             f"the change against ONNX Runtime fp32 of the shipped model; worst = the lowest change; "
             f"latency: median forward pass of the variant as served (`weedscan precision`'s measure).", "",
             "| int8 model | " + " | ".join(splits) + " | worst | bar (>= -0.01) | ms | train s | mean loss |",
             "|---|" + "---|" * (len(splits) + 5)]
    reference_row = " | ".join(f"{result.reference[s]:.4f}" for s in splits)
    lines.append(f"| ONNX Runtime fp32 (reference) | {reference_row} | | | {result.reference_latency_ms:.1f} | | |")
    for attempt in [result.shipped_variant, *result.attempts]:
        cells = " | ".join(f"{attempt.map50[s]:.4f} ({attempt.change[s]:+.4f})" for s in splits)
        loss = f"{attempt.mean_loss:.3f}" if attempt.mean_loss is not None else ""
        lines.append(f"| {attempt.label} | {cells} | {attempt.worst:+.4f} | "
                     f"{'yes' if attempt.worst >= -0.01 else 'no'} | {attempt.latency_ms:.1f} | "
                     f"{attempt.train_seconds:.0f} | {loss} |")
    return "\n".join(lines) + "\n"


def latency_side_by_side(models: dict[str, Path], threads: int, rounds: int) -> str:
    """Median forward pass of each int8 variant (forced, so unvalidated ones run too) and of
    ONNX Runtime fp32 of the first model, measured in interleaved rounds so a busy spell of the
    machine hits all of them alike. A markdown table."""
    first = next(iter(models.values()))
    detectors = {"ONNX Runtime fp32": Detector(first, threads=threads, engine="onnxruntime", precision="fp32")}
    for label, model in models.items():
        detectors[label] = Detector(model, threads=threads, engine="openvino", precision="int8")
    times: dict[str, list[float]] = {label: [] for label in detectors}
    for round_index in range(rounds):
        order = list(detectors) if round_index % 2 == 0 else list(reversed(detectors))
        for label in order:
            times[label].append(forward_latency_ms(detectors[label], runs=30))
    reference = float(np.median(times["ONNX Runtime fp32"]))
    rows = ["| model | median ms | x ONNX Runtime fp32 |", "|---|---|---|"]
    for label, measured in times.items():
        median = float(np.median(measured))
        rows.append(f"| {label} | {median:.2f} | {median / reference:.2f} |")
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "weedscan.onnx")
    parser.add_argument("--data", type=Path, nargs="+")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--calib", type=int, default=300)
    parser.add_argument("--float", dest="keep", choices=["decoding", "stem"], default="decoding")
    parser.add_argument("--max-batches", type=int, default=None, help="per epoch (a smoke run)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/qat"))
    parser.add_argument("--no-save", action="store_true", help="print, do not write benchmarks/results")
    parser.add_argument("--latency-of", nargs="+", metavar="LABEL=MODEL.onnx", default=None,
                        help="only time these models' int8 variants side by side (interleaved rounds) and "
                             "append the table to benchmarks/results/qat.md")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if args.latency_of:
        models = dict(item.split("=", 1) for item in args.latency_of)
        table = latency_side_by_side({k: Path(v) for k, v in models.items()}, args.threads, args.rounds)
        section = (f"\n### Forward pass side by side\n\n{provenance()}\n\nCommand: "
                   f"`{' '.join(['benchmarks/trial_qat.py', *sys.argv[1:]])}`; one 416 x 416 input, "
                   f"{args.threads} threads, median of {args.rounds} interleaved rounds of 30 runs.\n\n{table}")
        print(section)
        if not args.no_save:
            save_result(RESULTS_DIR / "qat.md", (RESULTS_DIR / "qat.md").read_text(encoding="utf-8") + section)
        return

    if not args.data:
        parser.error("--data is needed (the val splits to score on, the train splits to train on)")
    from training.offline import import_ultralytics

    import_ultralytics()
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    nncf = import_nncf()
    name = args.model.stem
    folder = args.out_dir / "model"
    shutil.rmtree(args.out_dir, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy2(args.model, folder / args.model.name)
    shutil.copy2(args.model.with_suffix(".json"), folder / f"{name}.json")

    started = time.perf_counter()
    reference_detector = Detector(args.model, threads=args.threads, engine="onnxruntime", precision="fp32")
    reference = map50_of(evaluate(args.model, args.data, "val", threads=args.threads,
                                  engine="onnxruntime", precision="fp32"))
    reference_latency = forward_latency_ms(reference_detector)
    shipped_attempt = score_variant(args.model, args.data, args.threads, reference,
                                    "shipped variant (post-training, accuracy control)", 0)
    print(f"reference and shipped variant scored in {time.perf_counter() - started:.0f} s", flush=True)

    train_images = calibration_images(args.data, args.calib)
    model = rebuilt_model(args.model, train_images[:64])
    calibration = [torch.from_numpy(blob) for blob in served_inputs(reference_detector, train_images)]
    quantized = nncf.quantize(model, nncf.Dataset(calibration), preset=nncf.QuantizationPreset.MIXED,
                              subset_size=len(calibration), ignored_scope=float_scope(model, nncf, args.keep))
    attempts = [export_and_score(quantized, folder, name, args.out_dir, args.data, args.threads, reference,
                                 "PyTorch post-training int8, not trained", 0)]
    print(attempts[-1].model_dump_json(), flush=True)

    # The shipped model's own recipe: each field repeated as it was trained.
    repeats = load_card(args.model).training_recipe.get("repeats", {})
    cfg, loader = train_loader(args.data, args.out_dir, args.batch, 416, repeats)
    quantized.args = cfg
    optimizer = torch.optim.Adam([p for p in quantized.parameters() if p.requires_grad], lr=args.lr)
    batches = 0
    for epoch in range(1, args.epochs + 1):
        began = time.perf_counter()
        mean_loss, batches = train_epoch(quantized, loader, optimizer, args.max_batches)
        took = time.perf_counter() - began
        attempt = export_and_score(quantized, folder, name, args.out_dir, args.data, args.threads, reference,
                                   f"quantization-aware, {epoch} epoch{'s' if epoch > 1 else ''}", epoch)
        attempts.append(attempt.model_copy(update={"train_seconds": round(took, 1), "mean_loss": mean_loss}))
        print(attempts[-1].model_dump_json(), flush=True)

    result = TrialResult(float_layers=args.keep, epochs=args.epochs, lr=args.lr, batch=args.batch,
                         calibration_inputs=len(calibration), batches_per_epoch=batches, reference=reference,
                         reference_latency_ms=round(reference_latency, 2), shipped_variant=shipped_attempt,
                         attempts=attempts)
    header = (f"## Quantization-aware fine-tuning trial (`benchmarks/trial_qat.py`)\n\n{provenance()}\n\n"
              f"CPU: {this_cpu().summary()}; NNCF {nncf.__version__}, PyTorch {torch.__version__}.\n\n"
              f"Command: `{' '.join(['benchmarks/trial_qat.py', *sys.argv[1:]])}`")
    text = markdown(result, header)
    print(text)
    if not args.no_save:
        save_result(RESULTS_DIR / "qat.md", text)
        (RESULTS_DIR / "qat.json").write_text(json.dumps(result.model_dump(), indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
