"""Pretrained starting weights from an Ultralytics ONNX export (fp32 or int8-quantized).

The only COCO-pretrained YOLO weights reachable offline may be ONNX files. Their initializers keep
Ultralytics' state-dict names, so the weights can be rebuilt into a trainable DetectionModel:

- a quantized tensor is stored as NAME_quantized, NAME_scale, NAME_zero_point:
  W = (q - zero_point) * scale;
- each Conv+BatchNorm was folded into one convolution with a bias. Re-expanding it needs the
  BatchNorm's statistics, which the export dropped, so they are measured again: a calibration pass
  over real images records each convolution's output mean and variance, and the BatchNorm is set
  to undo exactly that normalisation (running stats = measured, gamma = sqrt(var + eps),
  beta = folded bias + mean). The model then computes the ONNX file's function in eval mode and
  nearly the same in train mode, so fine-tuning starts from the pretrained features rather than
  from unit-variance activations;
- an end-to-end YOLO26 export holds only the one-to-one head; the one-to-many head that training
  also uses starts as a copy of it;
- the class branch's hidden width depends on the class count it was first built for (80 for COCO)
  and Ultralytics keeps that width when it fine-tunes to fewer classes, so the branch is built at
  the width the file holds (a weedscan export of a COCO fine-tune is 80 wide with 2 classes).
"""

from __future__ import annotations

import ast
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from serving.model_card import sha256_of
from serving.preprocess import letterbox

_QUANT_SUFFIXES = ("_quantized", "_scale", "_zero_point")
_ARCHITECTURES = {"yolov8": "yolov8", "yolo11": "yolo11", "yolo26": "yolo26"}
CALIBRATION_SIZE = 320  # calibration runs at a typical training size; statistics barely depend on it


class PretrainedError(Exception):
    """A file that cannot be turned into starting weights; the message says why."""


@dataclass(frozen=True)
class PretrainedOrigin:
    """What the model card records about the starting weights."""

    file: str
    sha256: str
    architecture: str
    description: str
    ultralytics_version: str
    licence: str
    source: str
    calibration_images: int


def onnx_tensors(path: Path) -> dict[str, np.ndarray]:
    """Named float tensors of an ONNX file, quantized ones dequantized."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    raw = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    tensors: dict[str, np.ndarray] = {}
    for name, value in raw.items():
        if name.endswith("_quantized"):
            base = name[: -len("_quantized")]
            scale = raw[f"{base}_scale"].astype(np.float32)
            zero = raw[f"{base}_zero_point"].astype(np.float32)
            if scale.ndim == 1 and value.ndim > 1:  # per-channel: one scale per output channel
                shape = (-1,) + (1,) * (value.ndim - 1)
                scale, zero = scale.reshape(shape), zero.reshape(shape)
            tensors[base] = ((value.astype(np.float32) - zero) * scale).astype(np.float32)
        elif not name.endswith(_QUANT_SUFFIXES[1:]) and value.dtype.kind == "f":
            tensors[name] = value.astype(np.float32)
    for node in model.graph.node:  # the exporter shares equal tensors through Identity nodes
        if node.op_type == "Identity" and node.input[0] in tensors:
            tensors[node.output[0]] = tensors[node.input[0]]
    return tensors


def onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    return {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}


def architecture_yaml(metadata: dict[str, str]) -> str:
    """'Ultralytics YOLOv8n model trained on coco.yaml' -> 'yolov8n.yaml'."""
    match = re.search(r"\b(YOLO(?:v8|11|26))([nslmx])\b", metadata.get("description", ""), re.IGNORECASE)
    if not match or metadata.get("task", "detect") != "detect":
        raise PretrainedError("not an Ultralytics detection export I can rebuild (its metadata names "
                              f"{metadata.get('description', 'no model')!r}); supported: "
                              "YOLOv8, YOLO11, YOLO26 detectors")
    return f"{_ARCHITECTURES[match.group(1).lower()]}{match.group(2).lower()}.yaml"


def _source_note(path: Path) -> str:
    """The row naming this file in a SOURCE.md beside it, if there is one."""
    source_md = path.parent / "SOURCE.md"
    if source_md.is_file():
        for line in source_md.read_text(encoding="utf-8").splitlines():
            if path.name in line and "|" in line:
                cells = [c.replace("`", "").strip() for c in line.strip().strip("|").split("|")]
                found = [c for c in cells if "github.com" in c or "@" in c]
                return found[0] if found else line.strip()
    return "unknown (no SOURCE.md row names this file)"


def pretrained_origin(path: Path) -> PretrainedOrigin:
    """What is known of a pretrained ONNX file without rebuilding it (no torch): its metadata,
    sha256 and the SOURCE.md row beside it."""
    metadata = onnx_metadata(path)
    try:
        architecture = architecture_yaml(metadata)
    except PretrainedError:
        architecture = ""
    return PretrainedOrigin(
        file=path.name, sha256=sha256_of(path), architecture=architecture,
        description=metadata.get("description", ""), ultralytics_version=metadata.get("version", ""),
        licence=metadata.get("license", "unknown"), source=_source_note(path), calibration_images=0)


def calibration_images(paths: list[Path], limit: int = 64) -> np.ndarray:
    """Letterboxed RGB float batch (N, 3, S, S) in [0, 1], as Ultralytics feeds its model."""
    blobs = []
    for path in paths[:limit]:
        image = cv2.imread(str(path))
        if image is None:
            continue
        boxed, _ = letterbox(image, CALIBRATION_SIZE)
        blobs.append(boxed[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0)
    if not blobs:
        raise PretrainedError("no readable calibration images")
    return np.stack(blobs)


def _conv_bn_pairs(model: Any) -> list[tuple[str, Any, Any]]:
    """(name, conv, bn) of every Ultralytics Conv block whose BatchNorm was folded at export."""
    import torch.nn as nn

    pairs = []
    for name, module in model.named_modules():
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            pairs.append((name, conv, bn))
    return pairs


def _match_class_branch_width(model: Any, yaml_name: str, tensors: dict[str, np.ndarray]) -> None:
    """Rebuild the head's class branches at the hidden width stored in the file, if it differs."""
    from ultralytics.nn.tasks import DetectionModel

    index = len(model.model) - 1
    head = model.model[-1]
    for attr in ("cv3", "one2one_cv3"):
        branches = getattr(head, attr, None)
        key = next((k for k in (f"model.{index}.{attr}.0.0.conv.weight", f"model.{index}.{attr}.0.0.1.conv.weight")
                    if k in tensors), None)
        if branches is None or key is None:
            continue
        width = int(tensors[key].shape[0])
        if width == branches[0][-1].in_channels:
            continue
        # c3 = max(ch0, min(nc, 100)): a model built for `width` classes has branches that wide.
        donor = getattr(DetectionModel(yaml_name, nc=width, verbose=False).model[-1], attr)
        for branch in donor:
            branch[-1] = type(branch[-1])(width, head.nc, 1)
        setattr(head, attr, donor)


def _fill_from_onnx(model: Any, tensors: dict[str, np.ndarray], end2end: bool) -> None:
    import torch
    import torch.nn as nn

    def take(key: str, shape: torch.Size) -> torch.Tensor:
        source = key
        if source not in tensors and end2end:  # one-to-many head starts as the one-to-one head
            source = re.sub(r"\.(cv[23])\.", r".one2one_\1.", key)
        if source not in tensors:
            raise PretrainedError(f"the ONNX file has no tensor for {key}")
        value = torch.from_numpy(tensors[source])
        if tuple(value.shape) != tuple(shape):
            raise PretrainedError(f"{key}: ONNX shape {tuple(value.shape)} != model {tuple(shape)} "
                                  "(a different architecture or scale?)")
        return value

    folded = {id(conv) for _, conv, _ in _conv_bn_pairs(model)}
    with torch.no_grad():
        for name, conv, bn in _conv_bn_pairs(model):
            conv.weight.copy_(take(f"{name}.conv.weight", conv.weight.shape))
            # Until calibrated: identity BatchNorm carrying the folded bias.
            bn.weight.fill_(1.0)
            bn.bias.copy_(take(f"{name}.conv.bias", bn.bias.shape))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d) and id(module) not in folded and module.weight.requires_grad:
                module.weight.copy_(take(f"{name}.weight", module.weight.shape))
                if module.bias is not None:
                    module.bias.copy_(take(f"{name}.bias", module.bias.shape))


def _calibrate_batchnorm(model: Any, images: np.ndarray) -> None:
    """Measure each folded conv's output statistics and re-expand its BatchNorm around them."""
    import torch

    pairs = _conv_bn_pairs(model)
    sums: dict[int, list[torch.Tensor]] = {}

    def record(index: int):  # noqa: ANN202 - a forward hook
        def hook(_module: Any, _inputs: Any, output: torch.Tensor) -> None:
            flat = output.detach().double().transpose(0, 1).reshape(output.shape[1], -1)
            stats = torch.stack([flat.sum(1), (flat * flat).sum(1),
                                 torch.full_like(flat[:, 0], flat.shape[1])])
            sums[index] = [stats] if index not in sums else [sums[index][0] + stats]
        return hook

    handles = [conv.register_forward_hook(record(i)) for i, (_, conv, _) in enumerate(pairs)]
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(images), 8):
                model(torch.from_numpy(images[start:start + 8]))
    finally:
        for handle in handles:
            handle.remove()
    with torch.no_grad():
        for i, (_, _, bn) in enumerate(pairs):
            total, squares, count = sums[i][0]
            mean = total / count
            var = (squares / count - mean * mean).clamp_min(0.0)
            bn.running_mean.copy_(mean.float())
            bn.running_var.copy_(var.float())
            bn.bias.add_(mean.float())
            bn.weight.copy_(torch.sqrt(var + bn.eps).float())


def rebuild_from_onnx(onnx_path: Path, calibration: list[Path]) -> tuple[Any, PretrainedOrigin]:
    """A trainable Ultralytics DetectionModel with the ONNX file's weights, and its origin."""
    from training.offline import import_ultralytics

    import_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    metadata = onnx_metadata(onnx_path)
    yaml_name = architecture_yaml(metadata)
    names = ast.literal_eval(metadata["names"]) if "names" in metadata else None
    if not isinstance(names, dict) or not names:
        raise PretrainedError(f"{onnx_path.name} has no class names in its metadata")
    tensors = onnx_tensors(onnx_path)
    model = DetectionModel(yaml_name, nc=len(names), verbose=False)
    _match_class_branch_width(model, yaml_name, tensors)
    head = model.model[-1]
    end2end = getattr(head, "one2one_cv2", None) is not None  # one-to-one head in the file
    _fill_from_onnx(model, tensors, end2end)
    images = calibration_images(calibration)
    _calibrate_batchnorm(model, images)
    model.names = {int(k): str(v) for k, v in names.items()}
    origin = PretrainedOrigin(
        file=onnx_path.name, sha256=sha256_of(onnx_path), architecture=yaml_name,
        description=metadata.get("description", ""),
        ultralytics_version=metadata.get("version", ""), licence=metadata.get("license", "unknown"),
        source=_source_note(onnx_path), calibration_images=len(images))
    return model, origin


def save_checkpoint(model: Any, origin: PretrainedOrigin, out: Path) -> Path:
    """An Ultralytics checkpoint that `YOLO(out)` and `--weights out` accept."""
    import torch
    import ultralytics

    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.float(), "ema": None, "epoch": -1, "optimizer": None,
                "train_args": {"task": "detect", "imgsz": CALIBRATION_SIZE},
                "version": ultralytics.__version__, "weedscan_pretrained": asdict(origin)}, out)
    return out


def starting_checkpoint(weights: Path, calibration: list[Path], out_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The .pt to train from and what the card says of it: .pt files pass through, ONNX exports
    are rebuilt (once: the checkpoint is cached in out_dir by the ONNX file's sha256)."""
    if weights.suffix.lower() != ".onnx":
        return weights, {"file": weights.name, "sha256": sha256_of(weights), "format": "pt"}
    digest = sha256_of(weights)
    cached = out_dir / f"{weights.stem}-{digest[:12]}.pt"
    if cached.is_file():
        import torch

        origin = torch.load(cached, map_location="cpu", weights_only=False)["weedscan_pretrained"]
        return cached, {**origin, "format": "onnx"}
    model, origin = rebuild_from_onnx(weights, calibration)
    save_checkpoint(model, origin, cached)
    return cached, {**asdict(origin), "format": "onnx"}
