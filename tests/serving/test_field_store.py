"""The catalogue's job API (the job runner builds on it) and its image rows."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from serving.fields.catalogue import Catalogue
from serving.fields.errors import JobNotFound
from serving.fields.labels import LabelBox, parse_labels
from serving.fields.store import FieldStore
from tests import images


def test_jobs_are_queued_claimed_one_at_a_time_updated_and_listed(tmp_path: Path) -> None:
    cat = Catalogue(tmp_path / "catalogue.sqlite")
    first = cat.create_job("finetune", {"dataset": "carrots", "base": "weedscan"})
    second = cat.create_job("finetune", {"dataset": "leeks"})
    assert (first.state, first.params, first.started, first.result) == (
        "queued", {"dataset": "carrots", "base": "weedscan"}, None, None)
    claimed = cat.claim_next_job()
    assert claimed is not None and claimed.id == first.id and claimed.state == "running"
    assert claimed.started is not None
    assert cat.claim_next_job() is None  # one job runs at a time
    progress = cat.update_job(first.id, progress={"epoch": 3, "epochs": 30, "eta_s": 400})
    assert progress.progress == {"epoch": 3, "epochs": 30, "eta_s": 400} and progress.state == "running"
    done = cat.update_job(first.id, state="done", result={"model": "carrots-1"})
    assert done.finished is not None and done.result == {"model": "carrots-1"}
    assert [j.id for j in cat.list_jobs()] == [second.id, first.id]  # newest first
    assert [j.id for j in cat.list_jobs(state="queued")] == [second.id]
    assert cat.list_jobs(kind="other") == []
    nxt = cat.claim_next_job(kind="finetune")
    assert nxt is not None and nxt.id == second.id
    failed = cat.update_job(second.id, state="failed", error="out of memory")
    assert (failed.state, failed.error) == ("failed", "out of memory")
    with pytest.raises(JobNotFound):
        cat.update_job(999, state="cancelled")
    assert cat.get_job(999) is None
    assert cat.get_job(first.id) == done


def test_running_jobs_are_marked_interrupted_at_restart(tmp_path: Path) -> None:
    cat = Catalogue(tmp_path / "catalogue.sqlite")
    job = cat.create_job("finetune", {})
    queued = cat.create_job("finetune", {})
    cat.claim_next_job()
    restarted = Catalogue(tmp_path / "catalogue.sqlite")  # a new process opens the same file
    marked = restarted.mark_interrupted()
    assert [j.id for j in marked] == [job.id] and marked[0].state == "interrupted"
    assert restarted.get_job(queued.id).state == "queued"
    with restarted._connect() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_two_concurrent_saves_of_one_photo_make_one_image(tmp_path: Path) -> None:
    store = FieldStore(tmp_path / "data", max_bytes=10 ** 9, max_pixels=10 ** 8)
    store.create_dataset("field", "carrot")
    photo = images.encode(images.field_like(200, 150, seed=3), ".jpg")
    labels = parse_labels('[{"class_name": "weed", "box": {"x1": 1, "y1": 1, "x2": 9, "y2": 9}}]')
    results: list[bool] = []

    def save(extra: list[LabelBox]) -> None:
        results.append(store.add_image("field", photo, labels + extra).created)

    threads = [threading.Thread(target=save, args=([],)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]
    assert len(store.list_images("field")) == 1
    assert len(list((tmp_path / "data" / "field" / "images" / "train").iterdir())) == 1
    assert [p.name for p in (tmp_path / "data" / "field").iterdir() if p.name.endswith(".tmp")] == []
