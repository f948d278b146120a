"""weedscan batch --mode green: vegetation regions as plants, no model; resumable per settings."""

from __future__ import annotations

from pathlib import Path

from tests.batch.helpers import error_lines, read_csv, read_jsonl, run_cli
from tests.serving.test_green_mode import JPEG, SOIL, check_plants


def test_batch_green_mode(tmp_path: Path) -> None:
    survey = tmp_path / "survey"
    survey.mkdir()
    (survey / "a.jpg").write_bytes(JPEG)
    (survey / "b.jpg").write_bytes(SOIL)
    out = tmp_path / "out"
    result = run_cli(survey, "--out", out, "--workers", "1", "--mode", "green", "--no-progress")
    assert result.exit_code == 0, result.output
    records = read_jsonl(out)
    assert [Path(r["path"]).name for r in records] == ["a.jpg", "b.jpg"]
    check_plants(records[0])
    assert records[1]["counts"] == {"plant": 0} and records[1]["weed_cover"] == 0.0
    rows = read_csv(out)
    assert float(rows[0]["weed_cover"]) == records[0]["weed_cover"] > 0
    assert int(rows[0]["plant"]) == records[0]["counts"]["plant"] > 0, "the plants are counted"
    assert (rows[0]["mode"], rows[0]["conf"]) == ("green", ""), "no confidence floor in mode=green"
    assert rows[1]["plant"] == "0"

    again = run_cli(survey, "--out", out, "--workers", "1", "--mode", "green", "--no-progress")
    assert again.exit_code == 0 and "2 already done" in again.stderr
    other = run_cli(survey, "--out", out, "--mode", "green", "--min-area", "500", "--no-progress")
    assert other.exit_code == 2
    assert "another model (green-on-brown" in error_lines(other)[0]
    bad = run_cli(survey, "--out", tmp_path / "x", "--mode", "green", "--veg-index", "ndvi")
    assert bad.exit_code == 2 and "--veg-index" in error_lines(bad)[0]
