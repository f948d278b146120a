"""`weedscan data ...` through Typer's CliRunner, and once as a real subprocess."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.training.data_samples import shared_dataset, write_cwfid_release, write_yolo_dataset, zip_folder
from training.cli import app
from training.data.cards import CARDS_ENV

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _shipped_cards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CARDS_ENV, raising=False)


def _run(*args: str):  # noqa: ANN202 - click's Result
    return runner.invoke(app, ["data", *args])


def _one_error(result, exit_code: int = 2) -> str:  # noqa: ANN001
    """The command failed with exactly one `error: ...` line on stderr and no traceback."""
    assert result.exit_code == exit_code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("command", ["list", "fetch", "import", "check", "merge"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = _run(command, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output and "weedscan data" in result.output


def test_list_shows_the_cards() -> None:
    result = _run("list")
    assert result.exit_code == 0
    assert "cwfid" in result.output and "sesame" in result.output
    assert "no commercial use" in result.output
    assert "humanbright/WeedDetector" in result.output


@pytest.mark.parametrize("name", ["sesame", "cwfid"])
def test_check_shared_datasets_pass(name: str) -> None:
    folder = shared_dataset(name)
    result = _run("check", str(folder))
    assert result.exit_code == 0, result.output
    assert "ok: no problems" in result.output
    assert "train" in result.output and "val" in result.output and "weed" in result.output


def test_check_corrupted_copy_fails_naming_the_files(tmp_path: Path) -> None:
    shared = shared_dataset("cwfid")
    copy = tmp_path / "cwfid"
    for sub in ("images/train", "labels/train"):
        (copy / sub).mkdir(parents=True)
    images = sorted((shared / "images/train").iterdir())[:3]
    for image in images:
        shutil.copyfile(image, copy / "images/train" / image.name)
        shutil.copyfile(shared / "labels/train" / f"{image.stem}.txt",
                        copy / "labels/train" / f"{image.stem}.txt")
    (copy / "data.yaml").write_text("train: images/train\nnames: [crop, weed]\n", encoding="utf-8")
    bad_image = copy / "images/train" / images[1].name
    bad_image.write_bytes(bad_image.read_bytes()[:2000])  # truncated
    bad_label = copy / "labels/train" / f"{images[2].stem}.txt"
    bad_label.write_text("1 0.5 0.5 0.1 0.1\n7 0.5 0.5 0.1 0.1\n", encoding="utf-8")
    result = _run("check", str(copy))
    assert result.exit_code == 1
    assert f"problem: {bad_image}: image does not decode" in result.stderr
    assert f"problem: {bad_label}:2: class 7 is not in 0..1" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: 2 problem(s) in ")


def test_unknown_dataset_name() -> None:
    assert ("unknown dataset 'nope' (known: cwfid, potato-uav, sesame, sugarbeet-jmpap)"
            in _one_error(_run("fetch", "nope")))
    assert "unknown dataset" in _one_error(_run("import", "nope", "--from", "."))


def test_missing_folder(tmp_path: Path) -> None:
    assert "dataset folder not found" in _one_error(_run("check", str(tmp_path / "none")))
    line = _one_error(_run("import", "cwfid", "--from", str(tmp_path / "none"), "--out",
                           str(tmp_path / "o")))
    assert "folder not found" in line
    assert "dataset YAML not found" in _one_error(_run("check", str(tmp_path)))


def test_malformed_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "data.yaml").write_text("names: [crop, weed\ntrain: images/train\n", encoding="utf-8")
    assert "is not valid YAML" in _one_error(_run("check", str(tmp_path / "ds")))
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "cwfid.yaml").write_text("name: cwfid\n  title: : bad\n", encoding="utf-8")
    monkeypatch.setenv(CARDS_ENV, str(tmp_path / "cards"))
    assert "cwfid.yaml is not valid YAML" in _one_error(_run("fetch", "cwfid"))
    assert "cwfid.yaml is not valid YAML" in _one_error(_run("list"))


def test_import_native_release(tmp_path: Path) -> None:
    release = write_cwfid_release(tmp_path / "dataset-master", ids=tuple(range(1, 9)))
    result = _run("import", "cwfid", "--from", str(release), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert f"native layout -> {tmp_path / 'out' / 'data.yaml'}" in result.output
    assert _run("check", str(tmp_path / "out")).exit_code == 0


def test_import_shared_yolo_folder_is_detected(tmp_path: Path) -> None:
    src = write_yolo_dataset(tmp_path / "src", {"train": 2, "val": 1})
    result = _run("import", "sesame", "--from", str(src), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "yolo layout" in result.output and "train 2, val 1 images" in result.output


def test_fetch_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = write_cwfid_release(tmp_path / "release", ids=tuple(range(1, 7)))
    archive = zip_folder(release, tmp_path / "cwfid.zip", "dataset-master")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    base = ["fetch", "cwfid", "--url", str(archive), "--cache-dir", str(tmp_path / "cache")]
    assert "--no-verify" in _one_error(_run(*base))
    assert "checksum mismatch" in _one_error(_run(*base, "--sha256", "0" * 64))
    result = _run(*base, "--no-verify")
    assert result.exit_code == 0, result.output
    assert f"sha256 {sha} (NOT verified)" in result.output
    result = _run(*base, "--sha256", sha)
    assert f"sha256 {sha} (verified)" in result.output
    assert "licence: non-commercial research only" in result.output


def test_merge_through_the_cli(tmp_path: Path) -> None:
    a = write_yolo_dataset(tmp_path / "a", seed=1)
    b = write_yolo_dataset(tmp_path / "b", seed=2)
    out = tmp_path / "merged"
    result = _run("merge", str(a), str(b), "--out", str(out), "--repeat", "a=4", "--copy")
    assert result.exit_code == 0, result.output
    assert f"merged: {out / 'data.yaml'}" in result.output
    assert len((out / "train.txt").read_text(encoding="utf-8").split()) == 3 * 4 + 3
    assert _run("check", str(out)).exit_code == 0
    assert "--repeat takes NAME=COUNT" in _one_error(_run("merge", str(a), "--out", str(out),
                                                          "--repeat", "a=0"))
    assert "unknown dataset(s): c" in _one_error(_run("merge", str(a), "--out", str(out),
                                                      "--repeat", "c=2"))


def test_subprocess_check_and_error() -> None:
    folder = shared_dataset("cwfid")
    done = subprocess.run([sys.executable, "-m", "training.cli", "data", "check", str(folder)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ok: no problems" in done.stdout
    done = subprocess.run([sys.executable, "-m", "training.cli", "data", "check", "/no/such/dir"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: dataset folder not found: /no/such/dir"
