"""Cross-check `weedscan eval` against Ultralytics' own `val` on the same model and data."""

from __future__ import annotations

import tempfile
from pathlib import Path

from training.offline import import_ultralytics
from training.trainset import build_training_set


def ultralytics_val(model_path: Path, data_yaml: Path, imgsz: int) -> dict[str, float]:
    """mAP50 and mAP50-95 from `yolo val` (a .pt or the .onnx), on a linked copy of the val split
    so that Ultralytics' label cache is written to a temporary folder, not into the dataset."""
    import_ultralytics()
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory() as tmp:
        linked = build_training_set([data_yaml], Path(tmp) / "data")
        metrics = YOLO(str(model_path), task="detect").val(
            data=str(linked), imgsz=imgsz, batch=1, conf=0.001, iou=0.7, device="cpu",
            plots=False, verbose=False, project=tmp, name="val")
    return {"mAP50": round(float(metrics.box.map50), 4), "mAP50-95": round(float(metrics.box.map), 4)}
