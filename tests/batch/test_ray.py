"""The same survey on a local Ray instance writes exactly what the local run writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serving.batch import outputs
from tests.batch.conftest import Survey
from tests.batch.helpers import read_jsonl, run_cli

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'weedscan[ray]')")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_ray_run_matches_the_local_run(survey: Survey, tmp_path: Path, local_ray: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEEDSCAN_THREADS", "1")  # one thread per worker on both sides, like Ray's actors
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert run_cli(survey.root, "--out", local, "--workers", "2", "--no-progress").exit_code == 1
    result = run_cli(survey.root, "--out", on_ray, "--ray", "local", "--workers", "2", "--no-progress")
    assert result.exit_code == 1, result.output  # the broken image, on Ray as well
    assert local_ray.is_initialized()  # a Ray the caller started is left running

    assert [r["path"] for r in read_jsonl(on_ray)] == [str(p) for p in survey.images]
    for name in (outputs.JSONL, outputs.SUMMARY_CSV, outputs.GEOJSON):
        assert (on_ray / name).read_text(encoding="utf-8") == (local / name).read_text(encoding="utf-8"), name


def test_ray_resumes_a_local_run(survey: Survey, tmp_path: Path, local_ray: Any) -> None:
    out = tmp_path / "out"
    run_cli(survey.root, "--out", out, "--workers", "1", "--limit", "2", "--no-progress")
    result = run_cli(survey.root, "--out", out, "--ray", "local", "--no-progress")
    assert f"{len(survey.images) - 2} image(s) processed, 2 already done" in result.stderr, result.output
    assert [r["path"] for r in read_jsonl(out)] == [str(p) for p in survey.images]
