"""NNCF int8 (ONNX backend): with accuracy control, and plain with the head in float, side by side.

    flock /tmp/weedscan-cpu.lock .venv/bin/python benchmarks/bench_int8_nncf.py [--variants ac,head]
        [--out-dir /tmp/nncf] [--subset-size 300] [--max-drop 0.01] [--preset mixed] [--threads 2]

Both variants are ONNX QDQ files (uint8/int8) that the serving code loads unchanged, on ONNX Runtime
and on OpenVINO. Calibration: about `--subset-size` training images (train splits only), shared
out evenly between the four fields, letterboxed exactly as the Detector feeds them (input border
included). Scoring: `training.evaluate.evaluate` on the val splits, through the serving code.

* ac: `nncf.quantize_with_accuracy_control` (max_drop 0.01, ABSOLUTE). Its metric is the worst val
  split's mAP50 difference to ONNX Runtime fp32, min over splits of (mAP50 - fp32 mAP50), scored on
  ONNX Runtime int8 (what `auto` runs an int8 file on); fp32 scores 0, so NNCF's drop is the largest
  per-split loss and NNCF stops once every split is within max_drop. Layers are ranked by the
  change of the raw head output on the val images (NNCF's normalized MSE). The head's decoding
  (DFL, anchors, class Sigmoid, output Concat) is kept in float from the start.
* head: plain `nncf.quantize`, every /model.22/ (detection head) node kept in float.

Latency: median forward pass (engine only) of one 416 x 416 input, `--threads` threads, val images,
interleaved rounds, against ONNX Runtime fp32 and OpenVINO bf16/fp32 of the fp32 file measured in
the same run. Writes benchmarks/results/int8_nncf.md (and the models plus cards to --out-dir).
"""

from __future__ import annotations

import os

# Nothing may go to the network: OpenVINO's and NNCF's telemetry (openvino_telemetry) are off.
# NNCF_CI makes nncf.telemetry a stub; CI=true makes openvino_telemetry decline consent (it honours
# CI with disable_in_ci, which NNCF sets) so no client id or stats are written either. Both are
# set before anything imports nncf or openvino. (`opt_in_out --opt_out` would itself send an event.)
os.environ["OPENVINO_TELEMETRY_OPT_OUT"] = "1"
os.environ["NNCF_CI"] = "1"
os.environ["CI"] = "true"

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, RESULTS_DIR, provenance, save_result, stats_ms  # noqa: E402
from serving.detector import DetectOptions, Detector  # noqa: E402
from serving.engines.cpu import this_cpu  # noqa: E402
from serving.model_card import PrecisionCheck, load_card, sha256_of, write_card  # noqa: E402
from serving.preprocess import letterbox, to_blob  # noqa: E402
from training.evaluate import evaluate  # noqa: E402
from training.quantize import calibration_images, head_nodes_to_keep_float  # noqa: E402
from training.trainset import YoloDataset  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
DATA_YAMLS = [SHARED / "sesame" / "data.yaml", SHARED / "cwfid" / "data.yaml",
              Path("/work/data/potato-uav/data.yaml"), Path("/work/data/sugarbeet-jmpap/data.yaml")]
BAR = 0.01  # serving's MAX_VALIDATED_DROP
CPU_FLAGS = ("avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "amx_tile")
log = logging.getLogger("bench_int8_nncf")


# --- inputs, exactly as the Detector letterboxes them ------------------------------------------

def served_inputs(detector: Detector, image: np.ndarray) -> list[np.ndarray]:
    """The letterboxed model inputs detector.detect(image) runs (whole frame, or its tiles):
    the same windows, stride and input border as Detector.detect_steps."""
    height, width = image.shape[:2]
    options = DetectOptions()
    windows, stride = [(0, 0, width, height)], detector.frame_stride
    tiled = detector.tiles(width, height, options)
    if tiled:
        windows, stride = detector._slicer().windows(width, height), None
    inputs = []
    for x0, y0, x1, y1 in windows:
        border = 0 if tiled and (x0, y0, x1, y1) != (0, 0, width, height) else detector.input_border
        inputs.append(letterbox(image[y0:y1, x0:x1], detector.input_size, stride, border)[0])
    return inputs


def balanced_calibration(yamls: list[Path], total: int) -> list[Path]:
    """`total` training images shared out evenly between the fields (a small field gives all it
    has, the rest goes to the others), each field's pick by training.quantize.calibration_images."""
    available = {y: len(YoloDataset.from_yaml(y).images("train")) for y in yamls}
    share, left = {}, total
    for i, y in enumerate(sorted(yamls, key=lambda y: available[y])):
        share[y] = min(available[y], left // (len(yamls) - i))
        left -= share[y]
    return [p for y in yamls for p in calibration_images([y], share[y])]


# --- scoring --------------------------------------------------------------------------------------

def write_int8_card(source_model: Path, out_path: Path, how: str, extra: dict) -> None:
    source = load_card(source_model)
    card = source.model_copy(update={
        "name": f"{source.name}-int8-nncf", "sha256": sha256_of(out_path),
        "precision": f"int8 (NNCF {how}, QDQ)", "precision_checks": [],
        "quantization": {**extra, "source_sha256": source.sha256}})
    write_card(out_path, card)


def score(model_path: Path, engine: str, precision: str, threads: int) -> dict[str, float]:
    report = evaluate(model_path, DATA_YAMLS, "val", engine=engine, precision=precision, threads=threads)
    return {name: float(s.mAP50) for name, s in report.datasets.items()}


def is_quantized(model) -> bool:  # noqa: ANN001 - onnx.ModelProto
    return any(n.op_type == "QuantizeLinear" for n in model.graph.node)


def float_convs(model_path: Path) -> list[str]:
    """Conv nodes whose weights are not int8 (not fed by a DequantizeLinear)."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    return [n.name for n in graph.node if n.op_type == "Conv" and n.input[1] not in dequantized]


# --- quantization ---------------------------------------------------------------------------------

class Quantizer:
    def __init__(self, args: argparse.Namespace) -> None:
        import onnx

        self.args = args
        self.model_path: Path = args.model
        self.model = onnx.load(str(args.model))
        self.detector = Detector(args.model, engine="onnxruntime", precision="fp32", threads=args.threads)
        self.input_name = self.detector.engine.input_name
        self.calib_paths = balanced_calibration(DATA_YAMLS, args.subset_size)
        self.val_paths = [p for y in DATA_YAMLS for p in YoloDataset.from_yaml(y).images("val")]
        self.reference: dict[str, float] = {}
        self.work = args.out_dir / "ac_work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.validations: list[dict] = []

    def _inputs(self, path: Path) -> list[np.ndarray]:
        image = cv2.imread(str(path))
        return [] if image is None else served_inputs(self.detector, image)

    def calibration_dataset(self):  # noqa: ANN201
        import nncf

        items = [x for p in self.calib_paths for x in self._inputs(p)]
        return nncf.Dataset(items, lambda im: {self.input_name: to_blob([im])}), len(items)

    def validation_dataset(self):  # noqa: ANN201
        import nncf

        # One whole-frame input per val image (no val image is big enough to be tiled).
        return nncf.Dataset(self.val_paths, lambda p: {self.input_name: to_blob(self._inputs(p)[:1])})

    def _outputs(self, model, paths: list[Path]) -> list[list[np.ndarray]]:  # noqa: ANN001
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.args.threads
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return [[session.run(None, {self.input_name: to_blob(self._inputs(p)[:1])})[0]] for p in paths]

    def validate(self, model, items) -> tuple[float, list[list[np.ndarray]]]:  # noqa: ANN001
        """NNCF's validation_fn: min over val splits of (mAP50 - fp32 mAP50) on `--ac-engine`
        int8, and the raw output of each item (so NNCF ranks layers by output change)."""
        import onnx

        paths = list(items)
        outputs = self._outputs(model, paths)
        if len(paths) < len(self.val_paths):  # NNCF's probe of the return type (one item)
            return 0.0, outputs
        if not is_quantized(model):
            return 0.0, outputs  # the fp32 source is the reference: 0 by definition
        candidate = self.work / "candidate.onnx"
        onnx.save(model, str(candidate))
        write_int8_card(self.model_path, candidate, "candidate", {})
        maps = score(candidate, self.args.ac_engine, "int8", self.args.threads)
        diffs = {k: maps[k] - self.reference[k] for k in maps}
        worst = min(diffs.values())
        self.validations.append({"map50": maps, "worst_diff": worst,
                                 "float_convs": len(float_convs(candidate))})
        log.info("validation %d: worst split %+.4f  %s", len(self.validations), worst,
                 {k: round(v, 4) for k, v in diffs.items()})
        return worst, outputs

    def decoding_in_float(self) -> list[str]:
        """The head after its conv branches (DFL, anchors, class Sigmoid, output Concat): as
        `weedscan quantize` keeps it in float, where one uint8 scale cannot hold both pixel
        coordinates and class probabilities."""
        return head_nodes_to_keep_float(self.model, keep_last_convs=False)

    def preset(self):  # noqa: ANN201
        import nncf

        return {"mixed": nncf.QuantizationPreset.MIXED,
                "performance": nncf.QuantizationPreset.PERFORMANCE}[self.args.preset]

    def accuracy_control(self, out_path: Path) -> dict:
        import nncf
        import onnx
        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

        calibration, n_calib = self.calibration_dataset()
        keep = self.decoding_in_float()
        start = time.perf_counter()
        model = nncf.quantize_with_accuracy_control(
            self.model, calibration, self.validation_dataset(), self.validate,
            max_drop=self.args.max_drop, drop_type=nncf.DropType.ABSOLUTE, preset=self.preset(),
            subset_size=n_calib, model_type=None, ignored_scope=nncf.IgnoredScope(names=keep, validate=False),
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=self.args.max_iterations, ranking_subset_size=self.args.ranking_subset,
                num_ranking_workers=1))
        seconds = time.perf_counter() - start
        onnx.save(model, str(out_path))
        info = {"method": "nncf.quantize_with_accuracy_control (ONNX backend)",
                "calibration_inputs": n_calib, "preset": self.args.preset,
                "max_drop": self.args.max_drop, "drop_type": "ABSOLUTE",
                "metric": f"min over val splits of mAP50 - fp32 mAP50, {self.args.ac_engine} int8",
                "ignored_scope": keep, "seconds": round(seconds),
                "validations": self.validations}
        write_int8_card(self.model_path, out_path, "quantize_with_accuracy_control", info)
        return info

    def head_in_float(self, out_path: Path) -> dict:
        import nncf
        import onnx

        calibration, n_calib = self.calibration_dataset()
        start = time.perf_counter()
        model = nncf.quantize(self.model, calibration, preset=self.preset(), subset_size=n_calib,
                              model_type=None, ignored_scope=nncf.IgnoredScope(patterns=[r"/model\.22/.*"]))
        seconds = time.perf_counter() - start
        onnx.save(model, str(out_path))
        info = {"method": "nncf.quantize (ONNX backend)", "calibration_inputs": n_calib,
                "preset": self.args.preset, "ignored_scope": "patterns ['/model\\.22/.*'] (whole detection head)",
                "seconds": round(seconds)}
        write_int8_card(self.model_path, out_path, "quantize, head in float", info)
        return info


# --- latency --------------------------------------------------------------------------------------

def latencies(detectors: dict[str, Detector], rounds: int, count: int) -> dict[str, dict[str, float]]:
    """Median forward pass of one 416 x 416 input (engine only), interleaved rounds."""
    paths = [p for y in DATA_YAMLS for p in YoloDataset.from_yaml(y).images("val")[:max(1, count // 4)]]
    any_detector = next(iter(detectors.values()))
    blobs = [to_blob([letterbox(cv2.imread(str(p)), any_detector.input_size, None,
                                any_detector.input_border)[0]]) for p in paths]
    times: dict[str, list[float]] = {k: [] for k in detectors}
    for d in detectors.values():
        for blob in blobs[:3]:
            d.engine.run(blob)
    for _ in range(rounds):
        for name, d in detectors.items():
            for blob in blobs:
                start = time.perf_counter()
                d.engine.run(blob)
                times[name].append(time.perf_counter() - start)
    return {k: stats_ms(v) for k, v in times.items()}


def cpu_line() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")),
                     "unknown")
    except (OSError, subprocess.CalledProcessError):
        model = this_cpu().model
    flags = this_cpu().flags
    return f"{model}; " + ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in CPU_FLAGS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "weedscan.onnx")
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/nncf"))
    parser.add_argument("--variants", default="ac,head", help="comma list of ac, head")
    parser.add_argument("--subset-size", type=int, default=300, help="calibration images (train splits)")
    parser.add_argument("--max-drop", type=float, default=0.01)
    parser.add_argument("--preset", choices=["mixed", "performance"], default="mixed")
    parser.add_argument("--ac-engine", choices=["onnxruntime", "openvino"], default="onnxruntime",
                        help="the engine whose int8 mAP50 accuracy control holds to max-drop")
    parser.add_argument("--ranking-subset", type=int, default=64)
    parser.add_argument("--max-iterations", type=int, default=30)
    parser.add_argument("--reuse", action="store_true", help="score the models already in --out-dir")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "int8_nncf.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    header = provenance()

    import nncf
    import openvino

    quantizer = Quantizer(args)
    reference = {"onnxruntime fp32": score(args.model, "onnxruntime", "fp32", args.threads),
                 "openvino bf16": score(args.model, "openvino", "bf16", args.threads)}
    quantizer.reference = reference["onnxruntime fp32"]
    log.info("reference %s", reference)

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    infos, scores = {}, dict(reference)
    for variant in variants:
        out = args.out_dir / f"weedscan-int8-nncf-{variant}.onnx"
        if not args.reuse:
            infos[variant] = (quantizer.accuracy_control if variant == "ac" else quantizer.head_in_float)(out)
        else:
            infos[variant] = load_card(out).quantization or {}
        for engine in ("onnxruntime", "openvino"):
            scores[f"{variant}: {engine} int8"] = score(out, engine, "int8", args.threads)

    detectors = {"onnxruntime fp32": Detector(args.model, args.threads, engine="onnxruntime", precision="fp32"),
                 "openvino bf16": Detector(args.model, args.threads, engine="openvino", precision="bf16"),
                 "openvino fp32": Detector(args.model, args.threads, engine="openvino", precision="fp32")}
    for variant in variants:
        out = args.out_dir / f"weedscan-int8-nncf-{variant}.onnx"
        for engine in ("onnxruntime", "openvino"):
            detectors[f"{variant}: {engine} int8"] = Detector(out, args.threads, engine=engine, precision="int8")
    times = latencies(detectors, args.rounds, args.images)

    splits = list(reference["onnxruntime fp32"])
    fp32, ort_ms, bf16_ms = reference["onnxruntime fp32"], times["onnxruntime fp32"]["median"], \
        times["openvino bf16"]["median"]
    rows, passing = [], []
    for name, d in detectors.items():
        maps = scores.get(name, scores["onnxruntime fp32"])  # openvino fp32 = onnxruntime fp32 (card)
        drops = {s: fp32[s] - maps[s] for s in splits}
        worst = max(drops.values())
        ok = worst <= BAR + 1e-9
        ms = times[name]["median"]
        if "int8" in name and ok:
            passing.append((ms, name))
        size = d.model_path.stat().st_size / 1e6
        rows.append(f"| {name} | {size:.1f} | " + " | ".join(f"{maps[s]:.4f} ({-drops[s]:+.4f})" for s in splits)
                    + f" | {worst:+.4f} | {'yes' if ok else 'no'} | {ms:.1f} | {ms / ort_ms:.2f} | {ms / bf16_ms:.2f} |")
    if name_scores_missing := [n for n in detectors if n not in scores and n != "openvino fp32"]:
        log.warning("no scores for %s", name_scores_missing)

    lines = ["## int8 with NNCF (`benchmarks/bench_int8_nncf.py`)", "", header, "",
             f"CPU: {cpu_line()}. NNCF {nncf.__version__}, OpenVINO {openvino.__version__}, "
             f"ONNX Runtime {__import__('onnxruntime').__version__}.", "",
             "Command: `flock /tmp/weedscan-cpu.lock .venv/bin/python benchmarks/bench_int8_nncf.py "
             + " ".join(sys.argv[1:]) + "`", "",
             f"mAP50 per val split through the serving code (`training.evaluate`), in brackets the "
             f"change against ONNX Runtime fp32; worst = the largest loss; bar = within {BAR} on every "
             f"split. Latency: median forward pass of one 416 x 416 input (engine only), "
             f"{args.images} val images x {args.rounds} rounds interleaved, {args.threads} threads; "
             "ratios against ONNX Runtime fp32 and OpenVINO bf16 of this run. OpenVINO fp32 is scored "
             "as ONNX Runtime fp32 (the card records them equal).", "",
             "| model: engine precision | MB | " + " | ".join(f"mAP50 {s}" for s in splits)
             + " | worst | bar | median ms | / ORT fp32 | / OV bf16 |",
             "|---|---|" + "---|" * len(splits) + "---|---|---|---|---|"] + rows
    if passing:
        ms, best = min(passing)
        lines += ["", f"Within the bar on every split and fastest: **{best}**, {ms:.1f} ms "
                  f"({ms / ort_ms:.2f}x ONNX Runtime fp32's time, {ms / bf16_ms:.2f}x OpenVINO bf16's)."]
    else:
        lines += ["", "No int8 variant kept every val split within the bar."]
    lines += ["", "Kept in float:"]
    for variant in variants:
        out = args.out_dir / f"weedscan-int8-nncf-{variant}.onnx"
        info = infos[variant]
        convs = float_convs(out)
        scope = info.get("ignored_scope", "")
        scope_text = f"{len(scope)} nodes of the head's decoding (DFL, anchors, class Sigmoid, output Concat)" \
            if isinstance(scope, list) else scope
        lines.append(f"- {variant} ({info.get('method', '?')}, preset {info.get('preset', '?')}, "
                     f"{info.get('calibration_inputs', '?')} calibration inputs, {info.get('seconds', '?')} s): "
                     f"ignored scope {scope_text}; float Conv nodes ({len(convs)}): "
                     + (", ".join(f"`{c}`" for c in convs) or "none"))
        if info.get("validations"):
            lines.append(f"  - accuracy-control validations (worst split mAP50 - fp32, float Convs): "
                         + "; ".join(f"{v['worst_diff']:+.4f}, {v['float_convs']}" for v in info["validations"]))
    lines.append("")
    text = "\n".join(lines)
    if args.output.resolve().parent == RESULTS_DIR.resolve():
        save_result(args.output, text)
    else:
        args.output.write_text(text)
    (args.out_dir / "scores.json").write_text(json.dumps({"scores": scores, "times": times}, indent=1))

    # The best: within the bar (fastest), else the smallest worst loss; kept as weedscan-int8-nncf.
    int8_rows = [(max(fp32[s] - scores[n][s] for s in splits), times[n]["median"], n)
                 for n in scores if "int8" in n]
    within = [r for r in int8_rows if r[0] <= BAR + 1e-9]
    if int8_rows:
        _, _, best = min(within, key=lambda r: r[1]) if within else min(int8_rows)
        variant = best.split(":")[0]
        src = args.out_dir / f"weedscan-int8-nncf-{variant}.onnx"
        dst = args.out_dir / "weedscan-int8-nncf.onnx"
        shutil.copyfile(src, dst)
        shutil.copyfile(src.with_suffix(".json"), dst.with_suffix(".json"))
        load_card(dst)  # the copy and its card still belong together
    print(text)
    if math.isnan(ort_ms):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
