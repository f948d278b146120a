"""The files of a batch run: the detections.jsonl log, and summary.csv and detections.geojson
regenerated from it (sorted by path) so that the three always agree."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from serving.answer import summary_header
from serving.green import GREEN_MODEL_NAME

Record = dict[str, Any]

JSONL = "detections.jsonl"
SUMMARY_CSV = "summary.csv"
GEOJSON = "detections.geojson"
OPTIONS_JSON = "options.json"  # the detect options the records were made with


def load_records(jsonl: Path) -> list[Record]:
    """The records so far; drops a half-written last line (a killed run) from the file."""
    if not jsonl.is_file():
        return []
    raw = jsonl.read_bytes()
    lines = raw.split(b"\n")
    records: list[Record] = []
    dropped = lines.pop() != b""  # text after the last newline: cut off mid-write
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            dropped = True
            continue
        if isinstance(record, dict) and isinstance(record.get("path"), str):
            records.append(record)
        else:
            dropped = True
    if dropped:  # keep only whole records, so appending goes on from a clean line start
        _write_atomic(jsonl, "".join(_jsonl_line(r) for r in records))
    return records


@contextmanager
def appender(jsonl: Path) -> Iterator[Callable[[Record], None]]:
    """Append records one line at a time, flushed, so a killed run loses at most one line."""
    with jsonl.open("a", encoding="utf-8") as handle:
        def write(record: Record) -> None:
            handle.write(_jsonl_line(record))
            handle.flush()

        yield write


def latest_by_path(records: Iterable[Record]) -> list[Record]:
    """One record per path (the last one written wins), sorted by path."""
    latest = {r["path"]: r for r in records}
    return [latest[p] for p in sorted(latest)]


def finalize(out_dir: Path, conf: float | None = None) -> list[Record]:
    """Rewrite detections.jsonl sorted and deduplicated, and regenerate the csv and geojson
    (`conf`: the confidence floor the records were made with, for the csv)."""
    records = latest_by_path(load_records(out_dir / JSONL))
    _write_atomic(out_dir / JSONL, "".join(_jsonl_line(r) for r in records))
    _write_atomic(out_dir / SUMMARY_CSV, summary_csv(records, conf))
    _write_atomic(out_dir / GEOJSON, json.dumps(feature_collection(records), indent=1) + "\n")
    return records


def recorded_options(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / OPTIONS_JSON
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def record_options(out_dir: Path, options: dict[str, Any]) -> None:
    _write_atomic(out_dir / OPTIONS_JSON, json.dumps(options, indent=1) + "\n")


def record_classes(records: Iterable[Record]) -> list[str]:
    """The classes of the records' counts (every class of the model), in the model's order."""
    classes: dict[str, None] = {}
    for r in records:
        classes.update(dict.fromkeys(r.get("counts", {})))
    return list(classes)


def summary_csv(records: Iterable[Record], conf: float | None = None) -> str:
    """summary.csv in the summary table's one schema (serving/answer.py summary_header): the
    page's table download has the same columns and units."""
    records = list(records)
    classes = record_classes(records)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(summary_header(classes))
    for r in records:
        gps = r.get("gps") or {}
        place = [gps.get("lat", ""), gps.get("lon", "")]
        if "error" in r:
            error = r["error"]
            writer.writerow([r["path"], *([""] * (len(classes) + 4)), *place,
                             f"{error.get('code')}: {error.get('message')}"])
            continue
        green = r.get("model", {}).get("name") == GREEN_MODEL_NAME
        counts = r.get("counts", {})
        writer.writerow([r["path"], *(counts.get(c, 0) for c in classes), r.get("weed_cover", 0.0),
                         r.get("weed_box_cover", 0.0), "" if green or conf is None else conf,
                         "green" if green else "model", *place, ""])
    return buffer.getvalue()


def feature_collection(records: Iterable[Record]) -> dict[str, Any]:
    """RFC 7946 FeatureCollection: one Point ([lon, lat], WGS 84) per image with a GPS fix; its
    properties are the summary table's (the file, a count per class, both covers)."""
    features = []
    for r in records:
        gps = r.get("gps")
        if "error" in r or not gps:
            continue
        features.append({
            "type": "Feature",
            "geometry": {"type": "Point",
                         "coordinates": [round(gps["lon"], 7), round(gps["lat"], 7)]},
            "properties": {"file": r["path"], **r.get("counts", {}),
                           "weed_cover": r.get("weed_cover", 0.0),
                           "weed_box_cover": r.get("weed_box_cover", 0.0)},
        })
    return {"type": "FeatureCollection", "features": features}


def _jsonl_line(record: Record) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # e.g. a full disk: the old file stays whole, no half-written copy is left
        tmp.unlink(missing_ok=True)
        raise
