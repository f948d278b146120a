"""An interrupted `weedscan train` run carries on from its last.pt with `--resume`."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.training.test_chain import make_dataset


class Interrupted(Exception):
    pass


@pytest.mark.slow
def test_resume_finishes_an_interrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training import bf16
    from training.cli import app

    monkeypatch.setenv("WEEDSCAN_CACHE", str(tmp_path / "cache"))
    data_yaml = make_dataset(tmp_path / "tiny", train=4, val=2)
    real_make = bf16.make_trainer_class

    def make_interrupting(use_bf16: bool, threads: int | None = None):  # noqa: ANN202
        base = real_make(use_bf16, threads)

        class StopsAfterFirstCheckpoint(base):  # type: ignore[misc, valid-type]
            def save_model(self):  # noqa: ANN202
                super().save_model()
                raise Interrupted("power cut after epoch 1")

        return StopsAfterFirstCheckpoint

    runner = CliRunner()
    args = ["train", "--data", str(data_yaml), "--model", "yolov8n.yaml", "--imgsz", "64",
            "--epochs", "2", "--batch", "2", "--no-plots", "--project", str(tmp_path / "runs"), "--name", "r"]
    monkeypatch.setattr(bf16, "make_trainer_class", make_interrupting)
    interrupted = runner.invoke(app, args)
    assert isinstance(interrupted.exception, Interrupted)
    last = tmp_path / "runs" / "r" / "weights" / "last.pt"
    assert last.is_file()

    monkeypatch.setattr(bf16, "make_trainer_class", real_make)
    resumed = runner.invoke(app, ["train", "--resume", str(last)])
    assert resumed.exit_code == 0, resumed.output
    with (tmp_path / "runs" / "r" / "results.csv").open(encoding="utf-8") as handle:
        epochs = [int(float(row["epoch"])) for row in csv.DictReader(handle)]
    assert epochs == [1, 2]  # epoch 1 from the first run, epoch 2 after resuming


def test_a_resumed_run_keeps_the_precision_and_threads_it_was_started_with(tmp_path: Path) -> None:
    import json

    from training.bf16 import cpu_has_native_bf16
    from training.train import RUN_RECORD, resumed_precision

    last = tmp_path / "run" / "weights" / "last.pt"
    last.parent.mkdir(parents=True)
    assert resumed_precision(last, None, None) == (cpu_has_native_bf16(), None)  # no record
    record = json.dumps({"config": {"data": [], "bf16": True, "threads": 1}})
    (tmp_path / "run" / RUN_RECORD).write_text(record, encoding="utf-8")
    assert resumed_precision(last, None, None) == (True, 1)
    assert resumed_precision(last, False, 2) == (False, 2)  # what the command line says wins
    (tmp_path / "run" / RUN_RECORD).write_text(json.dumps({"config": {"data": [], "bf16": None}}), encoding="utf-8")
    assert resumed_precision(last, None, None) == (cpu_has_native_bf16(), None)
