"""Run `weedscan batch` in-process and read what it wrote."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from serving.batch import outputs


def run_cli(*args: object) -> Result:
    from weedscan_cli import app  # the real root CLI, as users call it

    return CliRunner().invoke(app, ["batch", *(str(a) for a in args)])


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def read_jsonl(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / outputs.JSONL).read_text(encoding="utf-8").splitlines()]


def read_csv(out: Path) -> list[dict[str, str]]:
    with (out / outputs.SUMMARY_CSV).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def check_geojson(collection: dict[str, Any]) -> None:
    """RFC 7946: a FeatureCollection of Features with Point geometry, [lon, lat] in WGS 84 range."""
    assert collection["type"] == "FeatureCollection"
    assert isinstance(collection["features"], list)
    for feature in collection["features"]:
        assert feature["type"] == "Feature"
        assert isinstance(feature["properties"], dict)
        geometry = feature["geometry"]
        assert geometry["type"] == "Point"
        lon, lat = geometry["coordinates"]
        assert all(isinstance(v, float | int) and math.isfinite(v) for v in (lon, lat))
        assert -180 <= lon <= 180 and -90 <= lat <= 90
    try:
        import geojson  # an independent validator, in the dev extra
    except ImportError:
        return
    parsed = geojson.loads(json.dumps(collection))
    assert parsed.is_valid, parsed.errors()
