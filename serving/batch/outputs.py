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

from pydantic import BaseModel, ConfigDict, ValidationError

from serving.answer import RECORD, BatchErrorRecord, Record, summary_header, wire_dict
from serving.green import GREEN_MODEL_NAME

JSONL = "detections.jsonl"
SUMMARY_CSV = "summary.csv"
GEOJSON = "detections.geojson"
OPTIONS_JSON = "options.json"  # the detect options the records were made with


class NotARecord(ValueError):
    """detections.jsonl holds a whole line that is no batch record: refused, never dropped."""


def load_records(jsonl: Path) -> list[Record]:
    """The records so far; drops a half-written last line (a killed run) from the file."""
    if not jsonl.is_file():
        return []
    raw = jsonl.read_bytes()
    lines = raw.split(b"\n")
    records: list[Record] = []
    dropped = lines.pop() != b""  # text after the last newline: cut off mid-write
    for number, line in enumerate(lines, 1):
        try:
            json.loads(line)
        except ValueError:  # cut off mid-write: redone by this run
            dropped = True
            continue
        try:
            records.append(RECORD.validate_json(line))
        except ValidationError as exc:
            raise NotARecord(f"line {number} of {jsonl} is not a weedscan batch record "
                             f"({exc.errors()[0]['msg']}); use a new --out folder") from exc
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
    latest = {r.path: r for r in records}
    return [latest[p] for p in sorted(latest)]


def finalize(out_dir: Path, conf: float | None = None) -> list[Record]:
    """Rewrite detections.jsonl sorted and deduplicated, and regenerate the csv and geojson
    (`conf`: the confidence floor the records were made with, for the csv)."""
    records = latest_by_path(load_records(out_dir / JSONL))
    _write_atomic(out_dir / JSONL, "".join(_jsonl_line(r) for r in records))
    _write_atomic(out_dir / SUMMARY_CSV, summary_csv(records, conf))
    _write_atomic(out_dir / GEOJSON, json.dumps(feature_collection(records), indent=1) + "\n")
    return records


class RunOptions(BaseModel):
    """The detect options a batch's records were made with (options.json): a rerun with other
    options is refused rather than mixed in. conf and iou are the values used, the model card's
    defaults when none was given (an options.json of an older weedscan may hold null there)."""

    model_config = ConfigDict(extra="allow")  # a detect option added later is recorded too

    conf: float | None = None
    iou: float | None = None
    classes: list[int] | None = None
    max_det: int = 300
    tile: str = "auto"
    lanes: int | None = None


def recorded_options(out_dir: Path) -> RunOptions | None:
    path = out_dir / OPTIONS_JSON
    return RunOptions.model_validate_json(path.read_bytes()) if path.is_file() else None


def record_options(out_dir: Path, options: RunOptions) -> None:
    _write_atomic(out_dir / OPTIONS_JSON, json.dumps(options.model_dump(mode="json"), indent=1) + "\n")


def record_classes(records: Iterable[Record]) -> list[str]:
    """The classes of the records' counts (every class of the model), in the model's order."""
    classes: dict[str, None] = {}
    for r in records:
        if not isinstance(r, BatchErrorRecord):
            classes.update(dict.fromkeys(r.counts))
    return list(classes)


def formula_safe(text: str) -> str:
    """A text cell a spreadsheet will not run as a formula (a file named "=1+2.jpg"): a leading
    = + - @ tab or carriage return gets a quote before it, as the page's CSV does."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def summary_csv(records: Iterable[Record], conf: float | None = None) -> str:
    """summary.csv in the summary table's one schema (serving/answer.py summary_header): the
    page's table download has the same columns and units."""
    records = list(records)
    classes = record_classes(records)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180, as the page's download
    writer.writerow(summary_header(classes))
    for r in records:
        if isinstance(r, BatchErrorRecord):
            writer.writerow([formula_safe(r.path), *([""] * (len(classes) + 6)),
                             formula_safe(f"{r.error.code}: {r.error.message}")])
            continue
        place = [r.gps.lat, r.gps.lon] if r.gps else ["", ""]
        green = r.model.name == GREEN_MODEL_NAME
        writer.writerow([formula_safe(r.path), *(r.counts.get(c, 0) for c in classes), r.weed_cover,
                         r.weed_box_cover, "" if green or conf is None else conf,
                         "green" if green else "model", *place, ""])
    return buffer.getvalue()


def feature_collection(records: Iterable[Record]) -> dict[str, Any]:
    """RFC 7946 FeatureCollection: one Point ([lon, lat], WGS 84) per image with a GPS fix; its
    properties are the summary table's (the file, a count per class, both covers)."""
    features = []
    for r in records:
        if isinstance(r, BatchErrorRecord) or r.gps is None:
            continue
        features.append({
            "type": "Feature",
            "geometry": {"type": "Point",
                         "coordinates": [round(r.gps.lon, 7), round(r.gps.lat, 7)]},
            "properties": {"file": r.path, **r.counts, "weed_cover": r.weed_cover,
                           "weed_box_cover": r.weed_box_cover},
        })
    return {"type": "FeatureCollection", "features": features}


def _jsonl_line(record: Record) -> str:
    return json.dumps(wire_dict(record), ensure_ascii=False) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # e.g. a full disk: the old file stays whole, no half-written copy is left
        tmp.unlink(missing_ok=True)
        raise
