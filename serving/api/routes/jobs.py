"""/v1/jobs: fine-tune a model on saved field datasets, follow its progress, cancel or rerun it.

A job runs in a child process of the trainer install (serving/jobs.py); on a serving-only install
POST answers 501 with what to install. One job runs at a time; the others wait in the queue.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel

from serving.api.auth import require_api_key
from serving.api.deps import FieldsDep, JobsDep, ServiceDep
from serving.api.schemas import ErrorAnswer
from serving.errors import ClientError, InvalidParameter
from serving.fields.catalogue import FINAL_STATES, Job
from serving.fields.errors import JobNotFound
from serving.fields.store import FieldStore
from serving.jobs import TRAINER_INSTALL, FinetuneJobRequest, trainer_installed

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(require_api_key)])
MIN_PHOTOS_WITHOUT_VAL = 4
JOB_BODY_LIMIT = 64 * 1024  # a job's parameters: a few names and numbers


class TrainerMissing(ClientError):
    status, code = 501, "trainer_not_installed"


class JobConflict(ClientError):
    status, code = 409, "job_conflict"


class JobList(BaseModel):
    jobs: list[Job]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorAnswer} for s in (401, 503, *statuses)}


def _check_request(job: FinetuneJobRequest, store: FieldStore, service: Any) -> FinetuneJobRequest:
    """Names that exist, enough photos, a free candidate name; the base resolved to a name."""
    for name in job.datasets:
        info = store.get_dataset(name)  # 404 for an unknown dataset
        train, val = info.splits.get("train", 0), info.splits.get("val", 0)
        if train < MIN_PHOTOS_WITHOUT_VAL and not (train >= 2 and val >= 1):
            raise InvalidParameter(f"field dataset {name!r} has {train} training photo(s); fine-tuning "
                                   f"needs at least {MIN_PHOTOS_WITHOUT_VAL} (2 are kept out to score "
                                   "the result), or 2 plus a val split")
    registry = service.registry
    base = job.base or registry.active
    slot = registry.slot(base) if base else None
    if slot is None or slot.error is not None:
        usable = ", ".join(s.name for s in registry.slots() if s.error is None)
        raise InvalidParameter(f"base model {base!r} is not available; available: {usable or 'none'}")
    if registry.slot(job.name) is not None or (service.settings.models_dir / f"{job.name}.onnx").exists():
        raise JobConflict(f"a model named {job.name!r} exists; choose another name")
    return job.model_copy(update={"base": base})


def _refuse_duplicate(job: FinetuneJobRequest, store: FieldStore) -> None:
    for other in store.catalogue.list_jobs():
        if other.state in FINAL_STATES:
            continue
        if other.params.get("name") == job.name:
            raise JobConflict(f"job {other.id} ({other.state}) already makes model {job.name!r}")


@router.post("", status_code=202, response_model=Job,
             responses=_errors(403, 404, 409, 415, 422, 501),
             summary="Queue a fine-tuning job on saved field datasets")
async def create_job(request: Request, service: ServiceDep, store: FieldsDep,
                     runner: JobsDep) -> Job:
    """The candidate is written into the models folder and scored against its base on held-out
    photos; it serves only once activated (or with promote_if_better, when the gate says so)."""
    if not trainer_installed():
        raise TrainerMissing(f"fine-tuning needs the trainer side on the server: {TRAINER_INSTALL}")
    job = await service.admission.json_body(request, FinetuneJobRequest, JOB_BODY_LIMIT)

    def queue() -> Job:
        with store.guard():
            checked = _check_request(job, store, service)
            _refuse_duplicate(checked, store)
            return store.catalogue.create_job("finetune", checked.model_dump(mode="json"))

    answer = await asyncio.to_thread(queue)
    runner.wake()
    return answer


@router.get("", response_model=JobList, responses=_errors(), summary="Jobs, newest first")
async def list_jobs(store: FieldsDep) -> JobList:
    def listing() -> list[Job]:
        if not store.catalogue.path.is_file():
            return []
        with store.guard():
            return store.catalogue.list_jobs()

    return JobList(jobs=await asyncio.to_thread(listing))


def _job(store: FieldStore, job_id: int) -> Job:
    with store.guard():
        job = store.catalogue.get_job(job_id) if store.catalogue.path.is_file() else None
    if job is None:
        raise JobNotFound(f"no job {job_id}")
    return job


JobId = Path(ge=1, le=2**62, description="the job's id")


@router.get("/{job_id}", response_model=Job, responses=_errors(404),
            summary="One job: state, epoch, losses, metrics, ETA; its result when done")
async def get_job(store: FieldsDep, job_id: int = JobId) -> Job:
    return await asyncio.to_thread(_job, store, job_id)


@router.delete("/{job_id}", response_model=Job, responses=_errors(403, 404, 409),
               summary="Cancel a queued or running job")
async def cancel_job(store: FieldsDep, runner: JobsDep, job_id: int = JobId) -> Job:
    def cancel() -> Job:
        job = _job(store, job_id)
        if job.state in FINAL_STATES:
            raise JobConflict(f"job {job_id} is {job.state} already")
        with store.guard():
            return store.catalogue.update_job(job_id, state="cancelled", error="cancelled by a user")

    answer = await asyncio.to_thread(cancel)
    runner.wake()
    return answer


@router.post("/{job_id}/rerun", status_code=202, response_model=Job,
             responses=_errors(403, 404, 409, 422, 501),
             summary="Queue a new job with the parameters of an interrupted, failed or cancelled one")
async def rerun_job(service: ServiceDep, store: FieldsDep, runner: JobsDep,
                    job_id: int = JobId) -> Job:
    if not trainer_installed():
        raise TrainerMissing(f"fine-tuning needs the trainer side on the server: {TRAINER_INSTALL}")

    def queue() -> Job:
        old = _job(store, job_id)
        if old.state not in {"interrupted", "failed", "cancelled"}:
            raise JobConflict(f"job {job_id} is {old.state}; only an interrupted, failed or "
                              "cancelled job can be rerun")
        with store.guard():
            checked = _check_request(FinetuneJobRequest.model_validate(old.params), store, service)
            _refuse_duplicate(checked, store)
            return store.catalogue.create_job(old.kind, checked.model_dump(mode="json"))

    answer = await asyncio.to_thread(queue)
    runner.wake()
    return answer
