"""The field store below the routes: the catalogue's job API (the job runner builds on it),
concurrent saves, a full or failing disk mid-save, labels that are not numbers."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import pytest

from serving.fields import store as store_module
from serving.fields.catalogue import Catalogue
from serving.fields.errors import DataDirUnavailable, InvalidLabels, JobNotFound, QuotaExceeded
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


def test_the_first_job_makes_the_data_folder(tmp_path: Path) -> None:
    cat = Catalogue(tmp_path / "not" / "yet" / "catalogue.sqlite")
    job = cat.create_job("finetune", {"dataset": "x"})
    assert cat.path.is_file() and cat.get_job(job.id) == job


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


@pytest.mark.parametrize(("code", "error"), [(errno.ENOSPC, QuotaExceeded), (errno.EROFS, DataDirUnavailable)])
def test_a_disk_that_fails_mid_save_leaves_neither_file_nor_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               code: int, error: type[Exception]) -> None:
    store = FieldStore(tmp_path / "data", max_bytes=10 ** 9, max_pixels=10 ** 8)
    store.create_dataset("field", "carrot")
    folder = tmp_path / "data" / "field"
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    real = store_module.atomic_write
    calls: list[Path] = []

    def failing(path: Path, data: bytes | str) -> None:
        calls.append(path)
        if path.suffix == ".txt":  # the photo is written, then its label file fails
            raise OSError(code, "simulated")
        real(path, data)

    monkeypatch.setattr(store_module, "atomic_write", failing)
    photo = images.encode(images.field_like(200, 150, seed=5), ".jpg")
    with pytest.raises(error) as raised:
        store.add_image("field", photo, [])
    assert str(tmp_path / "data") in raised.value.message  # type: ignore[attr-defined]
    assert [p.suffix for p in calls] == [".jpg", ".txt"]
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    monkeypatch.setattr(store_module, "atomic_write", real)
    assert store.list_images("field") == [] and store.get_dataset("field").images == 0


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", '"5"', "null"])
def test_coordinates_must_be_finite_numbers(tmp_path: Path, value: str) -> None:
    store = FieldStore(tmp_path / "data", max_bytes=10 ** 9, max_pixels=10 ** 8)
    store.create_dataset("field", "carrot")
    photo = images.encode(images.field_like(200, 150, seed=6), ".jpg")
    text = f'[{{"class_name": "weed", "box": {{"x1": {value}, "y1": 1, "x2": 9, "y2": 9}}}}]'
    if value == '"5"':  # a numeric string is a number to pydantic's lax mode: accepted
        assert store.add_image("field", photo, parse_labels(text)).labels[0].box.x1 == 5
        return
    with pytest.raises(InvalidLabels):
        store.add_image("field", photo, parse_labels(text))
    assert store.list_images("field") == []
