"""The naive alternative a user would write: FastAPI wrapping Ultralytics `YOLO(model.onnx).predict`.

    python benchmarks/peers/naive_ultralytics_server.py MODEL.onnx PORT IMGSZ CONF IOU

POST /detect with the raw image bytes -> {"detections": [{"class_id", "confidence", "box": [x1, y1, x2, y2]}]}.
Only for benchmarks/bench_peers.py: run offline, on loopback.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from training.offline import import_ultralytics  # noqa: E402

import_ultralytics()  # the same offline switches weedscan's trainer uses: no phoning home

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from ultralytics import YOLO  # noqa: E402


def build_app(model: str, imgsz: int, conf: float, iou: float) -> FastAPI:
    app = FastAPI()
    yolo = YOLO(model, task="detect")
    yolo.predict(np.zeros((imgsz, imgsz, 3), np.uint8), imgsz=imgsz, verbose=False)

    @app.get("/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/detect")
    async def detect(request: Request) -> dict[str, list]:
        image = cv2.imdecode(np.frombuffer(await request.body(), np.uint8), cv2.IMREAD_COLOR)
        boxes = yolo.predict(image, imgsz=imgsz, conf=conf, iou=iou, verbose=False)[0].boxes
        return {"detections": [
            {"class_id": int(c), "confidence": float(s), "box": [float(v) for v in b]}
            for b, s, c in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist())]}

    return app


if __name__ == "__main__":
    model_path, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    conf_, iou_ = float(sys.argv[4]), float(sys.argv[5])
    uvicorn.run(build_app(model_path, size, conf_, iou_), host="127.0.0.1", port=port, log_level="warning")
