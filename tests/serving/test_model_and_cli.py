"""Model loading (card, sha256, providers) and `weedscan detect`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from serving.detector import Detector
from serving.engines.onnxruntime_engine import available_providers
from serving.errors import ModelCardError
from tests import images


def copy_model(shipped_model: Path, folder: Path) -> Path:
    model = folder / "copy.onnx"
    shutil.copyfile(shipped_model, model)
    shutil.copyfile(shipped_model.with_suffix(".json"), model.with_suffix(".json"))
    return model


def test_cpu_is_always_the_fallback_provider(detector: Detector) -> None:
    """ONNX Runtime's providers end with its CPU one (the `detector` fixture runs ONNX Runtime)."""
    providers = available_providers()
    assert providers[-1] == "CPUExecutionProvider"
    assert detector.providers[-1] == "CPUExecutionProvider"


def test_a_card_with_another_sha256_is_refused(shipped_model: Path, tmp_path: Path) -> None:
    model = copy_model(shipped_model, tmp_path)
    card = json.loads(model.with_suffix(".json").read_text(encoding="utf-8"))
    card["sha256"] = "f" * 64
    model.with_suffix(".json").write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(ModelCardError, match="sha256"):
        Detector(model)


def test_missing_or_broken_card(shipped_model: Path, tmp_path: Path) -> None:
    model = copy_model(shipped_model, tmp_path)
    model.with_suffix(".json").unlink()
    with pytest.raises(ModelCardError, match="card not found"):
        Detector(model)
    model.with_suffix(".json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelCardError, match="not valid JSON"):
        Detector(model)
    with pytest.raises(ModelCardError, match="not found"):
        Detector(tmp_path / "absent.onnx")


@pytest.mark.parametrize(("change", "named"), [
    ({"classes": []}, "classes"), ({"sha256": "abc"}, "sha256"), ({"thresholds": {"conf": 1.5}}, "thresholds.conf"),
    ({"output_layout": "yolo"}, "output_layout"), ({"name": None}, "name")])
def test_an_invalid_card_is_refused_naming_the_field(shipped_model: Path, tmp_path: Path,
                                                     change: dict, named: str) -> None:
    model = copy_model(shipped_model, tmp_path)
    card = json.loads(model.with_suffix(".json").read_text(encoding="utf-8"))
    card.update(change)
    model.with_suffix(".json").write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(ModelCardError, match=f"invalid: {named}"):
        Detector(model)


def test_the_card_round_trips_through_its_one_writer(shipped_model: Path, tmp_path: Path) -> None:
    from serving.model_card import ModelCard, load_card, write_card

    card = load_card(shipped_model)
    assert card.thresholds.conf == Detector(shipped_model).default_conf
    written = write_card(tmp_path / "copy.onnx", card)
    assert written == tmp_path / "copy.json"
    assert ModelCard.model_validate_json(written.read_text(encoding="utf-8")) == card
    with pytest.raises(ValueError, match="classes"):  # the writer refuses what the reader would
        write_card(tmp_path / "bad.onnx", card.model_copy(update={"classes": []}))
    assert not (tmp_path / "bad.json").exists()


def test_detect_cli_prints_json_lines_and_saves_annotated_images(shipped_model: Path, tmp_path: Path) -> None:
    good = tmp_path / "field.jpg"
    good.write_bytes(images.encode(images.field_like(400, 300)))
    rotated = tmp_path / "rotated.jpg"
    rotated.write_bytes(images.jpeg_with_orientation(images.field_like(400, 300), 6))
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image", encoding="utf-8")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "training.cli", "detect", str(good), str(rotated),
                           str(broken), "--model", str(shipped_model), "--save-dir", str(out),
                           "--conf", "0.01", "--lanes", "3"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr  # one file failed
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["path"] for line in lines] == [str(good), str(rotated), str(broken)]
    for line in lines[:2]:
        assert line["image"] == {"width": 400, "height": 300} and len(line["lanes"]) == 3
        annotated = cv2.imread(line["annotated"])
        assert annotated.shape == (300, 400, 3)
    assert lines[2]["error"]["code"] == "undecodable_image"
    assert "Traceback" not in done.stderr
    from serving.answer import BatchErrorRecord, DetectLine, wire_dict

    for line in lines:  # each line is the typed answer plus its path (and the annotated copy)
        typed = BatchErrorRecord if "error" in line else DetectLine
        assert wire_dict(typed.model_validate(line)) == line
    assert set(lines[2]) == {"path", "error"}


def test_detect_cli_takes_the_api_options_and_folders(shipped_model: Path, tmp_path: Path) -> None:
    from serving.imaging import read_header

    survey = tmp_path / "survey"
    for name, seed in (("a/x.jpg", 1), ("b/x.jpg", 2), ("b/y.png", 3), ("b/c/z.webp", 4)):
        (survey / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(survey / name), images.field_like(320, 240, seed))
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "training.cli", "detect", str(survey), "--model", str(shipped_model),
                           "--save-dir", str(out), "--conf", "0.01", "--iou", "0.5", "--classes", "weed",
                           "--max-det", "1", "--tile", "off", "--lanes", "2"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [Path(line["path"]).relative_to(survey).as_posix() for line in lines] == [
        "a/x.jpg", "b/c/z.webp", "b/x.jpg", "b/y.png"]
    assert any(line["detections"] for line in lines)
    for line in lines:
        assert len(line["detections"]) <= 1 and len(line["lanes"]) == 2
        assert {d["class_name"] for d in line["detections"]} <= {"weed"}
        annotated = Path(line["annotated"])  # same name, same folder below the common root, same format
        assert annotated == out / Path(line["path"]).relative_to(survey)
        data = annotated.read_bytes()
        assert read_header(data).media_type == read_header(Path(line["path"]).read_bytes()).media_type
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (240, 320, 3)


def test_detect_save_dir_overwrites_nothing_without_force_and_never_an_input(
        shipped_model: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from weedscan_cli import app

    photos = tmp_path / "photos"
    photos.mkdir()
    for name, seed in (("a.jpg", 1), ("b.png", 2)):
        assert cv2.imwrite(str(photos / name), images.field_like(96, 64, seed))
    originals = {p.name: p.read_bytes() for p in photos.iterdir()}
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"an earlier result")
    runner = CliRunner()
    base = ["detect", str(photos), "--model", str(shipped_model), "--tile", "off"]

    refused = runner.invoke(app, [*base, "--save-dir", str(out)])
    assert refused.exit_code == 2 and not refused.stdout, refused.output
    assert refused.stderr.strip() == f"error: {out / 'b.png'} exists: pass --force to overwrite it, " \
                                     "or choose another --save-dir"
    assert (out / "b.png").read_bytes() == b"an earlier result" and not (out / "a.jpg").exists()

    forced = runner.invoke(app, [*base, "--save-dir", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert cv2.imread(str(out / "b.png")).shape == (64, 96, 3)
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "b.png"]

    for save_dir in (photos, tmp_path / "link"):  # the input folder itself, or a link to it
        if save_dir.name == "link":
            save_dir.symlink_to(photos)
        for force in ([], ["--force"]):
            into_inputs = runner.invoke(app, [*base, "--save-dir", str(save_dir), *force])
            assert into_inputs.exit_code == 2 and not into_inputs.stdout, into_inputs.output
            assert "is an input image" in into_inputs.stderr and len(into_inputs.stderr.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == originals

    # A PNG named .jpg is saved as NAME.jpg.png: that final name is checked too, and a hard
    # link to the input is the input.
    png_named_jpg = tmp_path / "elsewhere" / "a.jpg"
    png_named_jpg.parent.mkdir()
    png_named_jpg.write_bytes(originals["b.png"])
    (tmp_path / "out2").mkdir()
    (tmp_path / "out2" / "a.jpg.png").hardlink_to(png_named_jpg)
    linked = runner.invoke(app, ["detect", str(png_named_jpg), "--model", str(shipped_model),
                                 "--tile", "off", "--save-dir", str(tmp_path / "out2"), "--force"])
    assert linked.exit_code == 1, linked.output
    assert json.loads(linked.stdout)["error"]["code"] == "save_refused"
    assert png_named_jpg.read_bytes() == originals["b.png"]


@pytest.mark.parametrize(("args", "message"), [
    (["--conf", "1.5"], "error: --conf: Input should be less than or equal to 1"),
    (["--iou", "-0.1"], "error: --iou: Input should be greater than or equal to 0"),
    (["--max-det", "1001"], "error: --max-det: Input should be less than or equal to 1000"),
    (["--lanes", "0"], "error: --lanes: Input should be greater than or equal to 1"),
    (["--tile", "sometimes"], "error: --tile: Input should be 'auto', 'on' or 'off'"),
    (["--classes", "weed", "--classes", "rose"], "error: --classes: unknown class(es) rose"),
    (["--classes", " , "], "error: --classes: give at least one class name"),
])
def test_detect_cli_refuses_what_the_api_refuses(tmp_path: Path, args: list[str], message: str) -> None:
    from typer.testing import CliRunner

    from weedscan_cli import app

    image = tmp_path / "a.jpg"
    image.write_bytes(images.encode(images.field_like(64, 48)))
    result = CliRunner().invoke(app, ["detect", str(image), *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
    assert not result.stdout


def test_cli_help_has_an_example_for_every_command() -> None:
    from typer.testing import CliRunner

    from weedscan_cli import app

    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    for command in ("serve", "detect", "batch", "data", "train", "export", "eval", "quantize"):
        assert command in top.output
        if command == "data":
            continue
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Example:" in result.output, command


def test_cli_doc_documents_every_option_of_every_command() -> None:
    """Each command's paragraph in docs/cli.md (with the shared detect options for detect and
    batch) names each of its options."""
    import typer

    from weedscan_cli import TRAINER_COMMANDS, app, trainer_command

    doc = (Path(__file__).parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    section = doc[:doc.index("## Whole surveys")]
    paragraphs = section.split("\n\n")
    shared = next(p for p in paragraphs if p.startswith("**Detect options**"))

    def options(command: object) -> list[list[str]]:
        if hasattr(command, "commands"):  # a group (data): its subcommands' options
            return [o for sub in command.commands.values() for o in options(sub)]
        return [[*p.opts, *p.secondary_opts] for p in command.params if p.param_type_name == "option"]

    for name, command in typer.main.get_group(app).commands.items():
        text = next(p for p in paragraphs if p.startswith(f"**`{name}`**"))
        text += shared if name in ("detect", "batch") else ""
        if name in TRAINER_COMMANDS:
            command = trainer_command(name)
        words = set(re.findall(r"--[a-z0-9-]+", text))
        missing = [spellings for spellings in options(command) if not words & set(spellings)]
        assert not missing, f"docs/cli.md's paragraph on {name} lacks {missing}"
