"""The field loop over real HTTP, on tiny data: save labelled photos -> queue a fine-tuning job ->
follow its progress -> the candidate appears with the gate's comparison -> activate it -> the next
photo is answered by it. The job really trains, in a child process: a few batches
(WEEDSCAN_FINETUNE_MAX_BATCHES), then export and scoring as in a full job."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import pytest

from tests.serving.conftest import LiveServer
from tests.serving.registry_helpers import models_folder
from tests.training.test_chain import make_dataset
from training.finetune import MAX_BATCHES_ENV

pytestmark = pytest.mark.slow


def test_save_finetune_follow_promote_and_answer(tmp_path: Path) -> None:
    synthetic = tmp_path / "synthetic"
    make_dataset(synthetic, train=6, val=0)
    models = models_folder(tmp_path)
    live = LiveServer(None, env={"WEEDSCAN_DATA_DIR": str(tmp_path / "data"), MAX_BATCHES_ENV: "2"},
                      args=["--models-dir", str(models)], log_path=tmp_path / "server.log")
    try:
        http = live.http
        assert http.post("/v1/datasets", json={"name": "discs", "crop": "beet"}).status_code == 201
        for image in sorted((synthetic / "images" / "train").iterdir()):
            height, width = cv2.imread(str(image)).shape[:2]
            labels = []
            for line in (synthetic / "labels" / "train" / f"{image.stem}.txt").read_text(encoding="utf-8").split("\n"):
                if line.strip():
                    cls, cx, cy, w, h = (float(v) for v in line.split())
                    labels.append({"class_name": ["crop", "weed"][int(cls)], "box": {
                        "x1": (cx - w / 2) * width, "y1": (cy - h / 2) * height,
                        "x2": (cx + w / 2) * width, "y2": (cy + h / 2) * height}})
            saved = http.post("/v1/datasets/discs/images", data={"labels": json.dumps(labels)},
                              files={"image": (image.name, image.read_bytes(), "image/jpeg")})
            assert saved.status_code == 201, saved.text

        # No replay of the public sets: this is the HTTP loop; the replay and its scoring are
        # tests/training/test_finetune.py's, and would triple the job's time here.
        queued = http.post("/v1/jobs", json={"kind": "finetune", "datasets": ["discs"], "name": "discs-1",
                                             "time_hours": 0.03, "replay": False})
        assert queued.status_code == 202, queued.text
        job_id = queued.json()["id"]
        seen_training = False
        deadline = time.monotonic() + 600
        while True:
            job = http.get(f"/v1/jobs/{job_id}").json()
            seen_training |= job["progress"].get("stage") == "training" and "eta_seconds" in job["progress"]
            if job["state"] not in ("queued", "running"):
                break
            assert time.monotonic() < deadline, job
            time.sleep(1)
        assert job["state"] == "done", (job, live.log()[-3000:])
        assert seen_training, "progress reported an epoch with its ETA"
        result = job["result"]
        assert result["model"] == "discs-1" and result["base"]["name"] == "weedscan" and not result["promoted"]
        assert [row["role"] for row in result["gate"]] == ["field"], result["gate"]

        deadline = time.monotonic() + 60  # the server follows its models folder, not the job
        while True:
            listing = http.get("/v1/models").json()
            candidate = next((m for m in listing["models"] if m["name"] == "discs-1"), None)
            if candidate is not None and candidate.get("state") != "broken":
                break
            assert time.monotonic() < deadline, listing
            time.sleep(0.5)
        assert listing["active"] == "weedscan", "a candidate serves only once promoted"
        assert candidate["lineage"][0]["name"] == "weedscan"

        assert http.post("/v1/models/discs-1/activate").status_code == 200
        photo = (synthetic / "images" / "train" / "train_0.jpg").read_bytes()
        answer = http.post("/v1/detect", content=photo, headers={"Content-Type": "image/jpeg"})
        assert answer.status_code == 200 and answer.json()["model"]["name"] == "discs-1"
    finally:
        log = live.stop()
    assert "internal_error" not in log, log[-3000:]
