"""`python -m training.jobs ID`: one job of the catalogue, run by the server's job runner.

It reads the job's parameters (serving.jobs.FinetuneJobRequest), fine-tunes on the saved field
datasets, reports each epoch as the job's progress, and ends the job done (with the gate's
comparison as its result) or failed (with the reason). A cancelled job is killed by the runner;
its state is never overwritten here.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from serving.fields.catalogue import Catalogue, Job
from serving.fields.store import CATALOGUE_FILE
from serving.jobs import FinetuneJobRequest
from serving.models_dir import read_active
from training.finetune import EpochProgress, FinetuneConfig, finetune, promote_if_better


def _still_ours(catalogue: Catalogue, job_id: int) -> bool:
    job = catalogue.get_job(job_id)
    return job is not None and job.state == "running"


def run_finetune(catalogue: Catalogue, job: Job, data_dir: Path, models_dir: Path) -> None:
    request = FinetuneJobRequest.model_validate(job.params)
    base = request.base or read_active(models_dir)
    if base is None:
        raise ValueError(f"no base model given and none active in {models_dir}")
    pid = os.getpid()  # the runner records it too, maybe after this process read the job

    def on_epoch(progress: EpochProgress) -> None:
        if _still_ours(catalogue, job.id):
            catalogue.update_job(job.id, progress={"pid": pid, "stage": "training",
                                                   **progress.model_dump()})

    catalogue.update_job(job.id, progress={"pid": pid, "stage": "preparing"})
    config = FinetuneConfig(data=[data_dir / name for name in request.datasets],
                            base=models_dir / f"{base}.onnx", name=request.name, models_dir=models_dir,
                            time=request.time_hours, imgsz=request.imgsz, replay=request.replay,
                            project=data_dir / "jobs" / "runs")
    model, report = finetune(config, progress=print, on_epoch=on_epoch)
    promoted = request.promote_if_better and promote_if_better(report, models_dir, request.name)
    if _still_ours(catalogue, job.id):
        catalogue.update_job(job.id, state="done", progress={"pid": pid, "stage": "done"},
                             result={"model": request.name, "file": model.name, "promoted": promoted,
                                     **report.model_dump(mode="json")})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("job_id", type=int)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--models-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    catalogue = Catalogue(args.data_dir / CATALOGUE_FILE)
    job = catalogue.get_job(args.job_id)
    if job is None or job.state != "running":
        print(f"job {args.job_id} is not running here", file=sys.stderr)
        return 2
    try:
        if job.kind != "finetune":
            raise ValueError(f"unknown job kind {job.kind!r}")
        run_finetune(catalogue, job, args.data_dir, args.models_dir)
    except Exception as exc:  # noqa: BLE001 - every failure ends the job with its reason
        traceback.print_exc()
        if _still_ours(catalogue, job.id):
            catalogue.update_job(job.id, state="failed", error=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
