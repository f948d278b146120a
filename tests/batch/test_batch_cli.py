"""`weedscan batch` end to end: outputs, broken images, resuming, clear errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from serving.answer import BatchErrorRecord, BatchRecord, summary_header, wire_dict
from serving.batch import outputs
from serving.detector import Detector
from serving.tiling import should_tile
from tests.batch.conftest import BIG_SIZE, Survey, geotagged_jpeg, make_survey
from tests.batch.helpers import check_geojson, error_lines, read_csv, read_jsonl, run_cli
from tests.conftest import REPO

ANSWER_KEYS = {"path", "model", "image", "detections", "counts", "weed_cover", "weed_box_cover"}


def test_batch_writes_jsonl_csv_and_geojson(survey: Survey, tmp_path: Path, detector: Detector) -> None:
    tiling = detector.tiling  # the survey holds a photo that tile="auto" cuts into tiles
    assert should_tile(*BIG_SIZE, detector.input_size, "auto", tiling.auto_factor, tiling.auto_min_side)
    out = tmp_path / "out"
    result = run_cli(survey.root, "--out", out, "--workers", "1")
    assert result.exit_code == 1, result.output  # 1: finished, but the broken image failed
    assert "img/s" in result.stderr or "s/img" in result.stderr  # the progress bar
    assert f"{len(survey.images)} image(s) processed" in result.stderr

    records = read_jsonl(out)
    assert [r["path"] for r in records] == [str(p) for p in survey.images]  # each once, sorted
    for path, record in zip(survey.images, records):
        if path == survey.broken:  # recorded, and the run went on
            assert record == {"path": str(path), "error": {
                "code": "undecodable_image", "message": record["error"]["message"]}}
            continue
        assert ANSWER_KEYS <= set(record) <= ANSWER_KEYS | {"gps"}, record.keys()
        height, width = cv2.imread(str(path)).shape[:2]
        assert record["image"] == {"width": width, "height": height}
        assert set(record["counts"]) == {"crop", "weed"}
        if path in survey.geotagged:
            lat, lon = survey.geotagged[path]
            assert record["gps"] == {"lat": pytest.approx(lat, abs=1e-6), "lon": pytest.approx(lon, abs=1e-6)}
        else:
            assert "gps" not in record

    for record in records:  # each line is the typed record: the wire answer plus path (and GPS)
        typed = BatchErrorRecord if "error" in record else BatchRecord
        assert wire_dict(typed.model_validate(record)) == record

    rows = read_csv(out)
    assert list(rows[0]) == summary_header(["crop", "weed"])
    assert [r["file"] for r in rows] == [r["path"] for r in records]
    for row, record in zip(rows, records):
        if "error" in record:
            assert row["error"].startswith("undecodable_image: ") and row["weed"] == ""
        else:
            assert row["error"] == "" and row["mode"] == "model"
            assert float(row["conf"]) == detector.default_conf
            assert int(row["weed"]) == record["counts"]["weed"]
            assert int(row["crop"]) == record["counts"]["crop"]
            assert float(row["weed_cover"]) == record["weed_cover"]
            assert float(row["weed_box_cover"]) == record["weed_box_cover"]

    collection = json.loads((out / outputs.GEOJSON).read_text(encoding="utf-8"))
    check_geojson(collection)
    features = collection["features"]
    assert [f["properties"]["file"] for f in features] == sorted(str(p) for p in survey.geotagged)
    for feature in features:
        lat, lon = survey.geotagged[Path(feature["properties"]["file"])]
        assert feature["geometry"]["coordinates"] == [pytest.approx(lon, abs=1e-6), pytest.approx(lat, abs=1e-6)]
        assert set(feature["properties"]) == {"file", "crop", "weed", "weed_cover", "weed_box_cover"}


def test_real_survey_images(shared_data: Path, tmp_path: Path) -> None:
    survey = make_survey(tmp_path / "survey")
    assert len(survey.real) == 6
    out = tmp_path / "out"
    result = run_cli(survey.root / "real", "--out", out, "--workers", "2", "--timing", "--no-progress")
    assert result.exit_code == 0, result.output
    records = read_jsonl(out)
    assert [r["path"] for r in records] == [str(p) for p in survey.real]
    for record in records:
        expected = (1296, 966) if "cwfid" in record["path"] else (512, 512)
        assert (record["image"]["width"], record["image"]["height"]) == expected
        assert record["timing_ms"]["total"] >= record["timing_ms"]["inference"] > 0


def test_limit_then_resume_after_a_half_written_line(survey: Survey, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_cli(survey.root, "--out", out, "--workers", "1", "--limit", "3", "--no-progress")
    assert "3 image(s) processed, 0 already done" in first.stderr, first.output
    assert len(read_jsonl(out)) == 3
    with (out / outputs.JSONL).open("a", encoding="utf-8") as log:  # what a run killed mid-write leaves
        log.write('{"path": "' + str(survey.images[-1]) + '", "model": {"na')

    second = run_cli(survey.root, "--out", out, "--workers", "1", "--no-progress")
    assert f"{len(survey.images) - 3} image(s) processed, 3 already done" in second.stderr, second.output
    paths = [r["path"] for r in read_jsonl(out)]
    assert paths == [str(p) for p in survey.images]

    third = run_cli(survey.root, "--out", out, "--no-progress")
    assert f"0 image(s) processed, {len(survey.images)} already done" in third.stderr, third.output
    assert [r["path"] for r in read_jsonl(out)] == paths


def test_a_killed_run_resumes_with_each_image_once(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    root.mkdir()
    for i in range(40):
        (root / f"img_{i:03d}.jpg").write_bytes(geotagged_jpeg(10 + i / 100, 20, 320, 240, seed=i))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "training.cli", "batch", str(root), "--out", str(out),
               "--workers", "1", "--no-progress"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = out / outputs.JSONL
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if log.is_file() and log.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert log.is_file() and log.read_bytes().count(b"\n") >= 2, "the run wrote nothing in time"
    done_before = log.read_bytes().count(b"\n")
    assert done_before < 40, "the run finished before it could be killed"

    result = run_cli(root, "--out", out, "--workers", "1", "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"{40 - done_before} image(s) processed, {done_before} already done" in result.stderr
    paths = [r["path"] for r in read_jsonl(out)]
    assert paths == sorted(str(p) for p in root.iterdir())  # every image exactly once
    assert len(json.loads((out / outputs.GEOJSON).read_text(encoding="utf-8"))["features"]) == 40


def test_retry_errors_reruns_fixed_images(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    root.mkdir()
    (root / "a.jpg").write_bytes(geotagged_jpeg(1, 2))
    (root / "b.jpg").write_bytes(b"broken")
    out = tmp_path / "out"
    first = run_cli(root, "--out", out, "--workers", "1", "--no-progress")
    assert first.exit_code == 1 and "new errors: 1" in first.stderr, first.output
    (root / "b.jpg").write_bytes(geotagged_jpeg(3, 4))
    # Nothing new ran, so nothing new failed: exit 0, and the kept error is said to be an old one.
    again = run_cli(root, "--out", out, "--workers", "1", "--no-progress")
    assert again.exit_code == 0, again.output
    assert ("0 image(s) processed, 2 already done" in again.stderr and "new errors: 0" in again.stderr
            and "1 error(s) of earlier runs kept (--retry-errors reruns them)" in again.stderr), again.stderr
    assert "error" in read_jsonl(out)[1], "still recorded"
    result = run_cli(root, "--out", out, "--workers", "1", "--no-progress", "--retry-errors")
    assert result.exit_code == 0, result.output
    records = read_jsonl(out)
    assert [r["path"] for r in records] == [str(root / "a.jpg"), str(root / "b.jpg")]
    assert "error" not in records[1] and records[1]["gps"]["lat"] == pytest.approx(3)


def test_help_shows_an_example() -> None:
    result = run_cli("--help")
    assert result.exit_code == 0
    assert "Example: weedscan batch" in result.output
    for code in ("0  done", "1  done, but images of this run failed", "2  bad usage", "3  a worker process died",
                 "4  no space left on the device"):
        assert code in result.output


@pytest.mark.parametrize(("make_args", "message"), [
    (lambda d: [d / "empty", "--out", d / "out"], "error: no images found in "),
    (lambda d: [d / "nowhere", "--out", d / "out"], "error: no such file or folder: "),
    (lambda d: [d / "one", "--out", d / "out", "--model", d / "missing.onnx"], "error: model file not found: "),
    (lambda d: [d / "one", "--out", d / "out", "--tile", "sometimes"], "error: --tile: Input should be 'auto'"),
    (lambda d: [d / "one", "--out", d / "out", "--conf", "1.5"], "error: --conf: Input should be less than"),
    (lambda d: [d / "one", "--out", d / "out", "--max-det", "0"], "error: --max-det: Input should be greater"),
    (lambda d: [d / "one", "--out", d / "out", "--lanes", "65"], "error: --lanes: Input should be less than"),
    (lambda d: [d / "one", "--out", d / "out", "--classes", "rose"], "error: --classes: unknown class(es) rose"),
])
def test_bad_input_gives_one_clear_error(tmp_path: Path, make_args, message: str) -> None:  # noqa: ANN001
    (tmp_path / "empty").mkdir()
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.jpg").write_bytes(geotagged_jpeg(1, 2))
    result = run_cli(*make_args(tmp_path))
    assert result.exit_code == 2, result.output
    assert len(error_lines(result)) == 1 and error_lines(result)[0].startswith(message), result.stderr
    assert "Traceback" not in result.output


def test_batch_takes_the_api_options(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    root.mkdir()
    for i in range(3):
        (root / f"img_{i}.jpg").write_bytes(geotagged_jpeg(1, 2, seed=i))
    out = tmp_path / "out"
    result = run_cli(root, "--out", out, "--workers", "1", "--no-progress", "--conf", "0.01", "--iou", "0.5",
                     "--classes", "weed", "--max-det", "1", "--lanes", "3", "--tile", "off")
    assert result.exit_code == 0, result.output
    records = read_jsonl(out)
    assert len(records) == 3 and any(r["detections"] for r in records)
    for record in records:
        assert len(record["detections"]) <= 1 and len(record["lanes"]) == 3
        assert {d["class_name"] for d in record["detections"]} <= {"weed"}
    # A rerun with other options does not mix its records in; the same options resume.
    other = run_cli(root, "--out", out, "--workers", "1", "--no-progress", "--conf", "0.5")
    assert other.exit_code == 2
    assert error_lines(other) == [f"error: {out} holds results made with other options (conf 0.01 -> 0.5, "
                                  "iou 0.5 -> 0.7, classes [1] -> None, max_det 1 -> 300, tile off -> auto, "
                                  "lanes 3 -> None); use a new --out folder for these options"]
    same = run_cli(root, "--out", out, "--workers", "1", "--no-progress", "--conf", "0.01", "--iou", "0.5",
                   "--classes", "weed", "--max-det", "1", "--lanes", "3", "--tile", "off")
    assert same.exit_code == 0 and "3 already done" in same.stderr, same.output


def test_asking_for_the_default_conf_by_its_value_resumes_the_same_run(tmp_path: Path) -> None:
    """A run made with the card's defaults, resumed with --conf/--iou equal to them, is the same
    run: it resumes instead of refusing (and the other way round, and from an options.json that
    an older weedscan wrote with null for the defaults)."""
    from serving.model_card import load_card
    from serving.models_dir import resolve_model

    card = load_card(resolve_model(None, REPO / "models"))
    default_conf, default_iou = str(card.thresholds.conf), str(card.thresholds.iou)
    root = tmp_path / "survey"
    root.mkdir()
    for i in range(2):
        (root / f"img_{i}.jpg").write_bytes(geotagged_jpeg(1, 2, seed=i))
    out = tmp_path / "out"
    first = run_cli(root, "--out", out, "--workers", "1", "--no-progress", "--limit", "1")
    assert first.exit_code == 0, first.output
    same = run_cli(root, "--out", out, "--workers", "1", "--no-progress", "--conf", default_conf,
                   "--iou", default_iou, "--limit", "1")
    assert same.exit_code == 0 and "1 image(s) processed, 1 already done" in same.stderr, same.output
    options = json.loads((out / outputs.OPTIONS_JSON).read_text(encoding="utf-8"))
    (out / outputs.OPTIONS_JSON).write_text(json.dumps({**options, "conf": None, "iou": None}), encoding="utf-8")
    older = run_cli(root, "--out", out, "--workers", "1", "--no-progress", "--conf", default_conf)
    assert older.exit_code == 0 and "0 image(s) processed, 2 already done" in older.stderr, older.output
    other = run_cli(root, "--out", out, "--workers", "1", "--no-progress", "--conf", "0.9")
    assert other.exit_code == 2 and f"conf {default_conf} -> 0.9" in other.stderr, other.output


def test_results_of_another_model_are_not_mixed_in(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.jpg").write_bytes(geotagged_jpeg(1, 2))
    out = tmp_path / "out"
    out.mkdir()
    old = {"path": "/old.jpg", "model": {"name": "old", "version": "1", "sha256": "0" * 64},
           "image": {"width": 1, "height": 1}, "detections": [], "counts": {}, "weed_cover": 0.0,
           "weed_box_cover": 0.0}
    (out / outputs.JSONL).write_text(json.dumps(old) + "\n", encoding="utf-8")
    result = run_cli(tmp_path / "one", "--out", out)
    assert result.exit_code == 2
    assert error_lines(result)[0].startswith(f"error: {out} holds results of another model (old")
    # A whole line that is no record (another tool's file) is refused, not dropped.
    (out / outputs.JSONL).write_text(json.dumps({"path": "/old.jpg", "score": 1}) + "\n", encoding="utf-8")
    foreign = run_cli(tmp_path / "one", "--out", out)
    assert foreign.exit_code == 2 and "line 1 of" in error_lines(foreign)[0], foreign.output
    assert "score" in (out / outputs.JSONL).read_text(encoding="utf-8"), "left as it was"




def test_ray_missing_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.jpg").write_bytes(geotagged_jpeg(1, 2))
    result = run_cli(tmp_path / "one", "--out", tmp_path / "out", "--ray", "local")
    assert result.exit_code == 2
    assert error_lines(result) == ["error: --ray needs Ray: pip install 'weedscan[ray]'"]
    assert not (tmp_path / "out" / outputs.JSONL).exists()
