"""`weedscan models list|activate|add|remove`, and `detect --model NAME`."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from serving.models_dir import read_active
from tests import images
from tests.serving.registry_helpers import SHIPPED, add_broken, add_copy, models_folder
from weedscan_cli import app

runner = CliRunner()


def run(*args: str):  # noqa: ANN201
    return runner.invoke(app, list(args))


def test_list_checks_every_model_and_marks_the_active_one(tmp_path: Path) -> None:
    folder = models_folder(tmp_path, "weedscan-b")
    add_broken(folder)
    done = run("models", "list", "--models-dir", str(folder))
    assert done.exit_code == 0, done.output
    lines = {line.split()[1] if line.startswith("*") else line.split()[0]: line
             for line in done.stdout.splitlines()}
    assert lines["weedscan"].startswith("* ") and "available" in lines["weedscan"]
    assert "broken" in lines["damaged"] and "sha256" in lines["mismatch"]
    body = json.loads(run("models", "list", "--json", "--models-dir", str(folder)).stdout)
    assert body["active"] == "weedscan"
    assert {m["name"]: m["state"] for m in body["models"]}["nocard"] == "broken"


def test_activate_add_remove(tmp_path: Path) -> None:
    folder = models_folder(tmp_path)
    elsewhere = add_copy(tmp_path / "runs", "field7")
    done = run("models", "add", str(elsewhere), "--name", "weedscan-field7", "--models-dir", str(folder))
    assert done.exit_code == 0, done.output
    card = json.loads((folder / "weedscan-field7.json").read_text(encoding="utf-8"))
    assert card["name"] == "weedscan-field7" and (folder / "weedscan-field7.onnx").read_bytes() == SHIPPED.read_bytes()
    again = run("models", "add", str(elsewhere), "--name", "weedscan-field7", "--models-dir", str(folder))
    assert again.exit_code == 2 and "already" in again.stderr
    replaced = run("models", "add", str(elsewhere), "--name", "weedscan-field7", "--replace",
                   "--models-dir", str(folder))
    assert replaced.exit_code == 0, replaced.output
    assert run("models", "activate", "weedscan-field7", "--models-dir", str(folder)).exit_code == 0
    assert read_active(folder) == "weedscan-field7"
    active = run("models", "add", str(elsewhere), "--name", "weedscan-field7", "--replace",
                 "--models-dir", str(folder))
    assert active.exit_code == 2 and "active" in active.stderr
    refused = run("models", "remove", "weedscan-field7", "--models-dir", str(folder))
    assert refused.exit_code == 2 and "active" in refused.stderr
    assert run("models", "activate", "weedscan", "--models-dir", str(folder)).exit_code == 0
    assert run("models", "remove", "weedscan-field7", "--models-dir", str(folder)).exit_code == 0
    assert not (folder / "weedscan-field7.onnx").exists() and not (folder / "weedscan-field7.json").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".") and p.name != ".active.json"]


def test_bad_names_and_broken_models_are_refused(tmp_path: Path) -> None:
    folder = models_folder(tmp_path)
    add_broken(tmp_path / "bad")
    for name in ("../weedscan", "/etc/passwd", ".active", "a/b", "x.onnx"):
        for command in (["activate", name], ["remove", name]):
            done = run("models", *command, "--models-dir", str(folder))
            assert done.exit_code == 2 and "not a model name" in done.stderr, (name, done.output)
        done = run("models", "add", str(folder / "weedscan.onnx"), "--name", name,
                   "--models-dir", str(tmp_path / "other"))
        assert done.exit_code == 2 and "not a model name" in done.stderr, (name, done.output)
    for broken in ("damaged", "mismatch", "nocard"):
        done = run("models", "add", str(tmp_path / "bad" / f"{broken}.onnx"), "--models-dir", str(folder))
        assert done.exit_code == 2 and not (folder / f"{broken}.onnx").exists(), done.output
        assert done.stderr.startswith("error:") and "Traceback" not in done.output
    assert run("models", "activate", "nope", "--models-dir", str(folder)).exit_code == 2
    assert read_active(folder) is None


def test_detect_takes_a_model_by_name(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    folder = models_folder(tmp_path, "weedscan-b")
    image = tmp_path / "frame.jpg"
    image.write_bytes(images.encode(images.field_like(160, 120), ".jpg"))
    monkeypatch.setenv("WEEDSCAN_MODELS_DIR", str(folder))
    done = run("detect", str(image), "--model", "weedscan-b")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["model"]["name"] == "weedscan-b"
    (folder / ".active.json").write_text(json.dumps({"active": "weedscan-b"}), encoding="utf-8")
    assert json.loads(run("detect", str(image)).stdout)["model"]["name"] == "weedscan-b"
    by_path = run("detect", str(image), "--model", str(folder / "weedscan.onnx"))
    assert json.loads(by_path.stdout)["model"]["name"] == "weedscan"
    missing = run("detect", str(image), "--model", "nope")
    assert missing.exit_code == 2 and "not found" in missing.stderr
