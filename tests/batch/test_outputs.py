"""The output files: a half-written log line is cut, csv and geojson follow the log."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from serving.answer import BatchRecord, summary_header
from serving.batch import outputs


def record(path: str, weeds: int = 0, gps: tuple[float, float] | None = None) -> dict:
    r = {"path": path, "model": {"name": "m", "version": "1", "sha256": "0" * 64},
         "image": {"width": 10, "height": 10}, "detections": [],
         "counts": {"crop": 1, "weed": weeds}, "weed_cover": 0.25, "weed_box_cover": 0.5}
    if gps:
        r["gps"] = {"lat": gps[0], "lon": gps[1]}
    return r


def paths(records: list[outputs.Record]) -> list[str]:
    return [r.path for r in records]


def test_a_half_written_last_line_is_cut_from_the_file(tmp_path: Path) -> None:
    log = tmp_path / outputs.JSONL
    whole = json.dumps(record("/a.jpg")) + "\n" + json.dumps(record("/b.jpg")) + "\n"
    log.write_text(whole + '{"path": "/c.jpg", "image": {"wid', encoding="utf-8")
    assert paths(outputs.load_records(log)) == ["/a.jpg", "/b.jpg"]
    assert log.read_text(encoding="utf-8") == whole
    with outputs.appender(log) as write:
        write(BatchRecord.model_validate(record("/c.jpg")))
    assert paths(outputs.load_records(log)) == ["/a.jpg", "/b.jpg", "/c.jpg"]


def test_finalize_sorts_dedupes_and_regenerates(tmp_path: Path) -> None:
    log = tmp_path / outputs.JSONL
    error = {"path": "/a.png", "error": {"code": "undecodable_image", "message": "bad"}}
    lines = [record("/c.jpg", 2, (-1.5, 2.5)), error, record("/b.jpg", 1), record("/c.jpg", 3, (-1.5, 2.5))]
    log.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    final = outputs.finalize(tmp_path, conf=0.3)
    assert paths(final) == ["/a.png", "/b.jpg", "/c.jpg"]
    assert isinstance(final[-1], BatchRecord) and final[-1].counts["weed"] == 3  # the last record wins
    assert outputs.load_records(log) == final
    table = list(csv.reader(io.StringIO((tmp_path / outputs.SUMMARY_CSV).read_text(encoding="utf-8"))))
    assert table[0] == summary_header(["crop", "weed"]), "the summary table's one schema"
    rows = [dict(zip(table[0], row)) for row in table[1:]]
    assert [r["file"] for r in rows] == ["/a.png", "/b.jpg", "/c.jpg"]
    assert rows[0]["error"] == "undecodable_image: bad" and rows[0]["weed"] == ""
    assert rows[2] == {"file": "/c.jpg", "crop": "1", "weed": "3", "weed_cover": "0.25",
                       "weed_box_cover": "0.5", "conf": "0.3", "mode": "model",
                       "latitude": "-1.5", "longitude": "2.5", "error": ""}
    assert (rows[1]["latitude"], rows[1]["longitude"]) == ("", ""), "no GPS fix: empty cells"
    collection = json.loads((tmp_path / outputs.GEOJSON).read_text(encoding="utf-8"))
    assert collection == {"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [2.5, -1.5]},
        "properties": {"file": "/c.jpg", "crop": 1, "weed": 3, "weed_cover": 0.25,
                       "weed_box_cover": 0.5}}]}


def test_summary_csv_is_the_pages_format_crlf_and_no_formula_runs(tmp_path: Path) -> None:
    """The page's table download and summary.csv: RFC 4180 line ends, and a cell that a
    spreadsheet would run as a formula (a file named "=HYPERLINK(...)") starts with a quote."""
    error = {"path": "@evil.png", "error": {"code": "undecodable_image", "message": "bad"}}
    lines = [record("=1+2.jpg", 1, (-1.5, 2.5)), error, record("/plain.jpg")]
    (tmp_path / outputs.JSONL).write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    outputs.finalize(tmp_path, conf=0.3)
    raw = (tmp_path / outputs.SUMMARY_CSV).read_bytes().decode()
    assert raw.count("\r\n") == 4 and "\n" not in raw.replace("\r\n", ""), "CRLF line ends"
    rows = {r[0]: r for r in csv.reader(io.StringIO(raw, newline=""))}
    assert set(rows) == {"file", "'=1+2.jpg", "'@evil.png", "/plain.jpg"}
    assert rows["'=1+2.jpg"][-3:-1] == ["-1.5", "2.5"], "numbers (a negative latitude) stay numbers"
