"""/v1/jobs and the job runner: queue, refuse, cancel, rerun, failures and orphans; no training
runs here (the runner's child is a stand-in process) except in the slow end-to-end test."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.api.app import create_app
from serving.config import Settings
from serving.fields.catalogue import Catalogue, Job
from serving.jobs import JobRunner, mark_orphans_interrupted
from tests import images
from tests.serving.conftest import wait_ready
from tests.serving.registry_helpers import models_folder
from tests.serving.test_datasets import assert_error, save

PHOTOS = [images.encode(images.field_like(320, 240, seed=s), ".jpg") for s in range(6)]


@pytest.fixture
def app_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, Path, Path]]:
    """A client whose job runner never starts a child: queued jobs stay queued."""
    monkeypatch.setattr(JobRunner, "start", lambda self: None)
    monkeypatch.setattr("serving.api.routes.jobs.trainer_installed", lambda: True)
    models = models_folder(tmp_path)
    data = tmp_path / "data"
    with TestClient(create_app(Settings(models_dir=models, data_dir=data, threads=1)),
                    raise_server_exceptions=False) as client:
        wait_ready(client.get)
        yield client, data, models


def field(client: TestClient, name: str, photos: int) -> None:
    assert client.post("/v1/datasets", json={"name": name, "crop": "carrot"}).status_code == 201
    for photo in PHOTOS[:photos]:
        assert save(client, name, photo).status_code in (200, 201)


def test_a_job_is_queued_with_its_base_resolved_and_listed(app_parts: tuple[TestClient, Path, Path]) -> None:
    client, _, _ = app_parts
    field(client, "carrots", 4)
    answer = client.post("/v1/jobs", json={"kind": "finetune", "datasets": ["carrots"], "name": "carrots-1"})
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["state"] == "queued" and job["params"]["base"] == "weedscan"
    assert client.get(f"/v1/jobs/{job['id']}").json()["id"] == job["id"]
    assert [j["id"] for j in client.get("/v1/jobs").json()["jobs"]] == [job["id"]]


def test_bad_jobs_are_refused_clearly(app_parts: tuple[TestClient, Path, Path]) -> None:
    client, _, _ = app_parts
    field(client, "few", 3)
    field(client, "carrots", 4)
    post = lambda body: client.post("/v1/jobs", json={"kind": "finetune", **body})  # noqa: E731
    assert_error(post({"datasets": ["nope"], "name": "x"}), 404, "dataset_not_found")
    refused = post({"datasets": ["few"], "name": "x"})
    assert_error(refused, 422, "invalid_parameter")
    assert "at least 4" in refused.json()["error"]["message"]
    unknown_base = post({"datasets": ["carrots"], "name": "x", "base": "ghost"})
    assert_error(unknown_base, 422, "invalid_parameter")
    assert "weedscan" in unknown_base.json()["error"]["message"], "it names the available models"
    assert_error(post({"datasets": ["carrots"], "name": "weedscan"}), 409, "job_conflict")
    assert_error(post({"datasets": ["carrots"], "name": "../up"}), 422, "invalid_parameter")
    assert_error(post({"datasets": ["carrots"], "name": "x", "epochs": 3}), 422, "invalid_parameter")
    assert post({"datasets": ["carrots"], "name": "twice"}).status_code == 202
    assert_error(post({"datasets": ["carrots"], "name": "twice"}), 409, "job_conflict")
    assert_error(client.get("/v1/jobs/999"), 404, "job_not_found")


def test_cancel_then_rerun(app_parts: tuple[TestClient, Path, Path]) -> None:
    client, _, _ = app_parts
    field(client, "carrots", 4)
    job = client.post("/v1/jobs", json={"datasets": ["carrots"], "name": "c1"}).json()
    assert_error(client.post(f"/v1/jobs/{job['id']}/rerun"), 409, "job_conflict")
    cancelled = client.delete(f"/v1/jobs/{job['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert_error(client.delete(f"/v1/jobs/{job['id']}"), 409, "job_conflict")
    again = client.post(f"/v1/jobs/{job['id']}/rerun")
    assert again.status_code == 202 and again.json()["params"] == job["params"]


def test_a_serving_only_install_answers_501_with_what_to_install(app_parts: tuple[TestClient, Path, Path],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    client, _, _ = app_parts
    monkeypatch.setattr("serving.api.routes.jobs.trainer_installed", lambda: False)
    refused = client.post("/v1/jobs", json={"datasets": ["carrots"], "name": "c1"})
    assert_error(refused, 501, "trainer_not_installed")
    assert "pip install" in refused.json()["error"]["message"]


def test_job_writes_need_the_key_and_are_refused_cross_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(JobRunner, "start", lambda self: None)
    settings = Settings(models_dir=models_folder(tmp_path), data_dir=tmp_path / "data", threads=1,
                        api_keys=["k1"])
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert_error(client.get("/v1/jobs"), 401, "unauthorized")
        assert_error(client.post("/v1/jobs", json={"datasets": ["a"], "name": "b"}), 401, "unauthorized")
        cross = client.post("/v1/jobs", json={"datasets": ["a"], "name": "b"},
                            headers={"X-API-Key": "k1", "Origin": "https://evil.example",
                                     "Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403


def _runner(tmp_path: Path, command: list[str]) -> tuple[JobRunner, Catalogue, Job]:
    catalogue = Catalogue(tmp_path / "catalogue.sqlite")
    job = catalogue.create_job("finetune", {"name": "x"})
    runner = JobRunner(catalogue, tmp_path, tmp_path / "models", command=lambda job: command)
    return runner, catalogue, job


def _until(predicate, timeout: float = 20.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_the_runner_kills_a_cancelled_job(tmp_path: Path) -> None:
    runner, catalogue, job = _runner(tmp_path, [sys.executable, "-c", "import time; time.sleep(120)"])
    runner.start()
    try:
        _until(lambda: catalogue.get_job(job.id).progress.get("pid"))
        pid = catalogue.get_job(job.id).progress["pid"]
        catalogue.update_job(job.id, state="cancelled")
        runner.wake()
        _until(lambda: subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0)
        assert catalogue.get_job(job.id).state == "cancelled"
    finally:
        runner.stop()


def test_a_child_that_dies_fails_its_job_with_its_last_words_and_the_next_one_starts(tmp_path: Path) -> None:
    runner, catalogue, job = _runner(tmp_path, [sys.executable, "-c", "import sys; sys.exit('out of memory')"])
    second = catalogue.create_job("finetune", {"name": "y"})
    runner.start()
    try:
        _until(lambda: catalogue.get_job(job.id).state == "failed")
        assert "out of memory" in catalogue.get_job(job.id).error
        _until(lambda: catalogue.get_job(second.id).state != "queued")
    finally:
        runner.stop()


def test_a_job_orphaned_by_a_stopped_server_is_interrupted(tmp_path: Path) -> None:
    catalogue = Catalogue(tmp_path / "catalogue.sqlite")
    catalogue.create_job("finetune", {})
    job = catalogue.claim_next_job()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    catalogue.update_job(job.id, progress={"pid": dead.pid})
    assert mark_orphans_interrupted(catalogue) == [job.id]
    assert catalogue.get_job(job.id).state == "interrupted"
    assert "rerun" in catalogue.get_job(job.id).error


def test_a_job_another_worker_just_claimed_is_not_taken_for_an_orphan(tmp_path: Path) -> None:
    catalogue = Catalogue(tmp_path / "catalogue.sqlite")
    catalogue.create_job("finetune", {})
    job = catalogue.claim_next_job()  # its runner has not written the child's pid yet
    assert mark_orphans_interrupted(catalogue) == []
    assert catalogue.get_job(job.id).state == "running"
