"""`weedscan batch` and `weedscan detect` on files that are not plain images of a sane size: a FIFO,
a link to /dev/zero, a file over the upload limit. Each is one error line, at once (never a hang
or a file read into memory without end), through the real CLI; a rerun that retries them does
the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serving.test_green_mode import JPEG

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and /dev/zero")

RUN_TIMEOUT_S = 120  # each run takes seconds; a hang on a FIFO would last for ever


def _cli(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "WEEDSCAN_MAX_UPLOAD_MB": "1"}
    return subprocess.run([sys.executable, "-m", "weedscan_cli", *(str(a) for a in args)],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env)


def _odd_survey(root: Path) -> Path:
    survey = root / "survey"
    survey.mkdir()
    (survey / "a_good.jpg").write_bytes(JPEG)
    os.mkfifo(survey / "b_fifo.jpg")
    (survey / "c_zero.jpg").symlink_to("/dev/zero")
    with open(survey / "d_big.jpg", "wb") as handle:  # over the 1 MB limit (sparse)
        handle.write(JPEG)
        handle.truncate(3 * 1024 * 1024)
    return survey


EXPECTED = {"a_good.jpg": None, "b_fifo.jpg": "not_a_regular_file",
            "c_zero.jpg": "not_a_regular_file", "d_big.jpg": "payload_too_large"}


def _codes(out: Path) -> dict[str, str | None]:
    records = [json.loads(line) for line in (out / "detections.jsonl").read_text(encoding="utf-8").splitlines()]
    return {Path(r["path"]).name: r.get("error", {}).get("code") for r in records}


def test_batch_gives_odd_files_one_error_line_each(tmp_path: Path) -> None:
    survey = _odd_survey(tmp_path)
    out = tmp_path / "out"
    for args in ([], ["--retry-errors"]):  # the rerun meets the same files again
        run = _cli("batch", survey, "--out", out, "--mode", "green", "--workers", "1",
                   "--no-progress", *args)
        assert run.returncode == 1, (run.returncode, run.stderr)  # done, some images failed
        assert "Traceback" not in run.stderr, run.stderr
        assert _codes(out) == EXPECTED


def test_batch_takes_an_odd_file_named_on_the_command_line(tmp_path: Path) -> None:
    survey = _odd_survey(tmp_path)
    out = tmp_path / "out"
    run = _cli("batch", survey / "b_fifo.jpg", survey / "a_good.jpg", "--out", out,
               "--mode", "green", "--workers", "1", "--no-progress")
    assert run.returncode == 1, run.stderr
    assert _codes(out) == {"a_good.jpg": None, "b_fifo.jpg": "not_a_regular_file"}


def test_detect_gives_odd_files_one_error_line_each(tmp_path: Path) -> None:
    survey = _odd_survey(tmp_path)
    run = _cli("detect", *sorted(survey.iterdir()), "--mode", "green")
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert {Path(r["path"]).name: r.get("error", {}).get("code") for r in lines} == EXPECTED
