"""`weedscan detect` and `weedscan batch` run one per-file pipeline and take their inputs the same
way; `detect --save-dir` lays the annotated copies out as the inputs are named. Through the real
CLI (weedscan_cli)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner, Result

from tests.batch.conftest import geotagged_jpeg
from tests.batch.helpers import read_jsonl, run_cli


def detect(*args: object) -> Result:
    from weedscan_cli import app

    return CliRunner().invoke(app, ["detect", *(str(a) for a in args)])


def lines(result: Result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_save_dir_keeps_the_inputs_layout_through_links(tmp_path: Path) -> None:
    """A linked photo (or folder) is saved where it is named among the inputs, not where the
    link points."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(geotagged_jpeg(1, 2, 160, 120, seed=1))
    elsewhere = tmp_path / "archive" / "2026" / "june"
    elsewhere.mkdir(parents=True)
    (elsewhere / "b.jpg").write_bytes(geotagged_jpeg(3, 4, 160, 120, seed=2))
    (photos / "b.jpg").symlink_to(elsewhere / "b.jpg")
    (elsewhere / "sub").mkdir()
    (elsewhere / "sub" / "c.jpg").write_bytes(geotagged_jpeg(5, 6, 160, 120, seed=3))
    (photos / "linked").symlink_to(elsewhere / "sub")
    out = tmp_path / "out"
    result = detect(photos / "a.jpg", photos / "b.jpg", photos / "linked", "--mode", "green",
                    "--save-dir", out)
    assert result.exit_code == 0, result.output
    assert [line["annotated"] for line in lines(result)] == [
        str(out / "a.jpg"), str(out / "b.jpg"), str(out / "linked" / "c.jpg")]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == [
        "a.jpg", "b.jpg", "linked/c.jpg"]


def test_detect_takes_globs_as_batch_does(tmp_path: Path, monkeypatch) -> None:
    survey = tmp_path / "survey"
    (survey / "flight1").mkdir(parents=True)
    (survey / "flight2" / "deep").mkdir(parents=True)
    for name, seed in (("flight1/a.jpg", 1), ("flight2/deep/b.JPG", 2), ("flight2/c.png", 3)):
        (survey / name).write_bytes(geotagged_jpeg(1, 2, 96, 64, seed=seed))
    monkeypatch.chdir(tmp_path)
    result = detect("survey/**/*.jpg", "survey/flight2/deep/*.JPG", "--mode", "green")
    assert result.exit_code == 0, result.output
    assert [line["path"] for line in lines(result)] == [
        "survey/flight1/a.jpg", "survey/flight2/deep/b.JPG"]
    nothing = detect("survey/**/*.tif", "--mode", "green")
    assert nothing.exit_code == 2 and nothing.stderr.startswith("error: no images found in survey/**/*.tif")


def test_detect_and_batch_give_the_same_record(tmp_path: Path) -> None:
    """One pipeline: a detect line is the batch record of the same file (plus its timings)."""
    survey = tmp_path / "survey"
    survey.mkdir()
    (survey / "geo.jpg").write_bytes(geotagged_jpeg(-33.8688, 151.2093, 320, 240, seed=4))
    (survey / "broken.jpg").write_bytes(b"not an image")
    printed = detect(survey, "--lanes", "3", "--conf", "0.05")
    assert printed.exit_code == 1, printed.output  # one file failed
    batch = run_cli(survey, "--out", tmp_path / "out", "--workers", "1", "--no-progress",
                    "--lanes", "3", "--conf", "0.05")
    assert batch.exit_code == 1, batch.output
    by_detect = {Path(line["path"]).name: line for line in lines(printed)}
    for record in read_jsonl(tmp_path / "out"):
        line = by_detect[Path(record["path"]).name]
        timing = line.pop("timing_ms", None)
        assert {**line, "path": record["path"]} == record
        if "error" not in record:
            assert set(timing) >= {"decode", "total"} and record["gps"]["lat"] < 0
