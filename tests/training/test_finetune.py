"""`weedscan finetune`: the field's photos, the gate, the training mix, and the whole job."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.netguard import guarded
from tests.training.test_chain import make_dataset
from training.finetune import (
    DatasetScore,
    FinetuneError,
    GateComparison,
    Recipe,
    labels_digest,
    split_field,
    verdict,
    write_training_set,
)


def field_without_val(root: Path, photos: int) -> Path:
    make_dataset(root, train=photos, val=0)
    (root / "data.yaml").write_text("train: images/train\nnames: [crop, weed]\n", encoding="utf-8")
    return root


def test_without_a_val_split_two_photos_are_kept_out_and_never_trained_on(tmp_path: Path) -> None:
    split = split_field(field_without_val(tmp_path / "field", 8), seed=0)
    assert (len(split.train), len(split.gate)) == (6, 2)
    assert not {p.image for p in split.train} & {p.image for p in split.gate}
    assert "held out" in split.gate_source
    assert split_field(tmp_path / "field", seed=0).gate == split.gate, "the same seed keeps the same photos out"


def test_a_val_split_is_the_gate_and_every_train_photo_is_trained_on(tmp_path: Path) -> None:
    make_dataset(tmp_path / "field", train=5, val=3)
    split = split_field(tmp_path / "field", seed=0)
    assert (len(split.train), len(split.gate)) == (5, 3)
    assert "val split" in split.gate_source


@pytest.mark.parametrize("photos", [1, 3])
def test_too_few_photos_without_a_val_split_are_refused(tmp_path: Path, photos: int) -> None:
    with pytest.raises(FinetuneError, match="at least 4"):
        split_field(field_without_val(tmp_path / "field", photos), seed=0)


def test_broken_photos_labels_and_classes_are_refused_by_name(tmp_path: Path) -> None:
    root = field_without_val(tmp_path / "field", 6)
    (root / "images" / "train" / "train_0.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(FinetuneError, match="train_0.jpg cannot be decoded"):
        split_field(root, seed=0)
    field_without_val(tmp_path / "field2", 6)
    (tmp_path / "field2" / "labels" / "train" / "train_1.txt").write_text("7 0.5 0.5 0.1 0.1\n", encoding="utf-8")
    with pytest.raises(FinetuneError, match=r"train_1.txt:1"):
        split_field(tmp_path / "field2", seed=0)
    field_without_val(tmp_path / "field3", 6)
    (tmp_path / "field3" / "data.yaml").write_text("train: images/train\nnames: [weed, crop]\n", encoding="utf-8")
    with pytest.raises(FinetuneError, match="classes"):
        split_field(tmp_path / "field3", seed=0)


def test_the_labels_digest_changes_with_any_label(tmp_path: Path) -> None:
    split = split_field(field_without_val(tmp_path / "field", 6), seed=0)
    photos = split.train + split.gate
    before = labels_digest(photos)
    label = next(p.label for p in photos if p.label)
    label.write_text(label.read_text(encoding="utf-8").replace("1 ", "0 ", 1), encoding="utf-8")
    assert labels_digest(photos) != before


def test_the_training_mix_repeats_the_field_beside_a_replay_sample(tmp_path: Path) -> None:
    split = split_field(field_without_val(tmp_path / "field", 8), seed=0)
    public = make_dataset(tmp_path / "public", train=40, val=2)
    recipe = Recipe(replay_images=32, field_share=0.5)
    data_yaml, gate_yamls = write_training_set(tmp_path / "run", [split], [public], recipe, seed=0)
    train = (tmp_path / "run" / "train.txt").read_text(encoding="utf-8").split()
    val = (tmp_path / "run" / "val.txt").read_text(encoding="utf-8").split()
    field_rows = [t for t in train if "/fields/" in t]
    assert len(train) == 64 and len(field_rows) == 32
    assert len(set(field_rows)) == 6, "each of the 6 training photos is repeated"
    assert len(set(train) - set(field_rows)) == 32, "32 different public photos"
    small = make_dataset(tmp_path / "small", train=4, val=1)
    write_training_set(tmp_path / "run2", [split], [public, small], recipe, seed=0)
    mixed = (tmp_path / "run2" / "train.txt").read_text(encoding="utf-8").split()
    assert sum("/replay/small/" in m for m in mixed) == 16, "a small public set is repeated to its share"
    assert sum("/replay/public/" in m for m in mixed) == 16
    assert len(val) == 2 and not set(val) & set(train), "the gate photos are never trained on"
    for image in train + val:  # Ultralytics finds a label by swapping images/ for labels/
        label = Path(image.replace("/images/", "/labels/")).with_suffix(".txt")
        assert label.is_file(), label
    assert len(gate_yamls) == 1 and (gate_yamls[0].parent / "images" / "gate").is_dir()
    assert data_yaml.is_file()


def _row(role: str, before: float, after: float, name: str = "x") -> GateComparison:
    return GateComparison(dataset=name, role=role,  # type: ignore[arg-type]
                          base=DatasetScore(images=2, mAP50=before, weed_AP50=before, crop_AP50=before),
                          candidate=DatasetScore(images=2, mAP50=after, weed_AP50=after, crop_AP50=after))


def test_the_gate_wants_a_field_gain_and_little_forgetting() -> None:
    assert verdict([_row("field", 0.1, 0.5), _row("replay", 0.8, 0.79, "sesame")], 0.03)[0]
    better, reason = verdict([_row("field", 0.1, 0.5), _row("replay", 0.8, 0.7, "sesame")], 0.03)
    assert not better and "forgot" in reason and "sesame" in reason
    assert not verdict([_row("field", 0.5, 0.4)], 0.03)[0]


def tiny_public_sets(root: Path, names: tuple[str, ...] = ("sesame", "cwfid")) -> Path:
    """Small stand-ins for the base's public training sets, under the names its card gives them:
    replayed and scored as the real ones would be, in a fraction of the time."""
    for name in names:
        make_dataset(root / name, train=4, val=2, size=96)
    return root


def test_replayed_sets_are_found_in_the_given_folders_then_the_cache_then_beside_the_checkout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training import finetune

    given, cache, checkout = tmp_path / "given", tmp_path / "cache", tmp_path / "checkout"
    for folder, names in ((given, ("sesame",)), (cache / "datasets", ("sesame", "cwfid")),
                          (checkout, ("sesame", "cwfid", "potato-uav"))):
        for name in names:
            (folder / name).mkdir(parents=True)
            (folder / name / "data.yaml").write_text("train: images/train\nnames: [crop, weed]\n", encoding="utf-8")
    monkeypatch.setenv("WEEDSCAN_PUBLIC_DATA_DIRS", f"{tmp_path / 'nowhere'}{os.pathsep}{given}")
    monkeypatch.setenv("WEEDSCAN_CACHE", str(cache))
    monkeypatch.setattr(finetune, "CHECKOUT_DATA_DIR", checkout)
    assert finetune.find_replay_data(["sesame", "cwfid", "potato-uav", "never-fetched"]) == [
        given / "sesame" / "data.yaml", cache / "datasets" / "cwfid" / "data.yaml",
        checkout / "potato-uav" / "data.yaml"]


def stop_training_after(monkeypatch: pytest.MonkeyPatch, batches: int) -> None:
    """The job trains a few batches, not the whole time budget; everything after training
    (checkpoint, export, parity, the gate's scoring) runs as in a full job."""
    from training.finetune import MAX_BATCHES_ENV

    monkeypatch.setenv(MAX_BATCHES_ENV, str(batches))


@pytest.mark.slow
def test_the_check_command_makes_a_servable_candidate_offline(tmp_path: Path, shipped_model: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Exactly the independent check's interface, on a tiny field, with the network blocked."""
    from serving.detector import Detector
    from serving.model_card import load_card
    from training.cli import app

    monkeypatch.setenv("WEEDSCAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WEEDSCAN_PUBLIC_DATA_DIRS", str(tiny_public_sets(tmp_path / "public")))
    stop_training_after(monkeypatch, 2)
    monkeypatch.chdir(tmp_path)
    field = field_without_val(tmp_path / "field", 8)
    models_dir = tmp_path / "candidates"
    with guarded(allow_loopback=False) as attempts:
        result = CliRunner().invoke(app, ["finetune", "--data", str(field), "--base", str(shipped_model),
                                          "--name", "myfield", "--models-dir", str(models_dir),
                                          "--time", "0.03"])
        assert result.exit_code == 0, result.output
        again = CliRunner().invoke(app, ["finetune", "--data", str(field), "--base", str(shipped_model),
                                         "--name", "myfield", "--models-dir", str(models_dir)])
    assert again.exit_code != 0 and "exists" in again.output
    assert attempts == [], f"network attempts: {attempts}"
    candidate = models_dir / "myfield.onnx"
    card = load_card(candidate)  # sha256 matches: serving will take it
    base = load_card(shipped_model)
    assert card.lineage[0].sha256 == base.sha256 and card.lineage[0].relation == "fine-tuned from"
    assert card.lineage[-1].relation == "pretrained start"
    report = json.loads((models_dir / "myfield.json").read_text(encoding="utf-8"))["finetune"]
    assert report["base"]["sha256"] == base.sha256
    assert report["field"][0]["train_photos"] == 6 and report["field"][0]["gate_photos"] == 2
    assert [(row["role"], row["dataset"]) for row in report["gate"]] == [
        ("field", "field"), ("replay", "sesame"), ("replay", "cwfid")], "each replayed set's val split is scored"
    assert report["replay"] == ["sesame", "cwfid"]
    assert report["epochs_completed"] == 2, "two batches: an epoch is one batch of this field and replay mix"
    record = tmp_path / "runs" / "finetune" / "myfield" / "weedscan_train.json"
    trained = json.loads(record.read_text(encoding="utf-8"))
    args = trained["ultralytics_args"]
    assert args["nbs"] == args["batch"], "one optimizer step per batch"
    assert "candidate" in result.output and "mAP50" in result.output
    detector = Detector(candidate, threads=1)
    assert detector.class_names == ["crop", "weed"]
    assert not [p for p in models_dir.iterdir() if p.name.startswith(".")], "no staging left behind"


def test_a_batch_cap_ends_training_and_a_bad_one_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from training.finetune import MAX_BATCHES_ENV, _stop_after, max_batches_from_env

    trainer = SimpleNamespace(stop=False)
    stop = _stop_after(3)
    for _ in range(2):
        stop(trainer)
    assert not trainer.stop
    stop(trainer)
    assert trainer.stop
    monkeypatch.delenv(MAX_BATCHES_ENV, raising=False)
    assert max_batches_from_env() is None
    monkeypatch.setenv(MAX_BATCHES_ENV, " 4 ")
    assert max_batches_from_env() == 4
    for bad in ("0", "-1", "two", "1.5"):
        monkeypatch.setenv(MAX_BATCHES_ENV, bad)
        with pytest.raises(FinetuneError, match=MAX_BATCHES_ENV):
            max_batches_from_env()


def test_the_learning_rate_follows_the_time_budget_not_the_epochs() -> None:
    import time
    from types import SimpleNamespace

    from training.finetune import _learning_rate_by_time

    group = {"initial_lr": 0.01, "lr": 0.01}
    set_rate = _learning_rate_by_time(lrf=0.1)
    for hours_done, expected in ((0.0, 0.01), (0.5, 0.0055), (1.0, 0.001), (3.0, 0.001)):
        trainer = SimpleNamespace(args=SimpleNamespace(time=1.0), optimizer=SimpleNamespace(param_groups=[group]),
                                  train_time_start=time.time() - hours_done * 3600)
        set_rate(trainer)
        assert group["lr"] == pytest.approx(expected, rel=1e-3), hours_done


def test_promote_if_better_moves_the_folders_active_model_only_when_the_gate_says_so(tmp_path: Path) -> None:
    from serving.models_dir import read_active
    from training.finetune import BaseModelRef, FinetuneReport, promote_if_better

    def report(better: bool) -> FinetuneReport:
        return FinetuneReport(base=BaseModelRef(name="b", file="b.onnx", sha256="0" * 64), field=[], replay=[],
                              recipe=Recipe(), image_size=416, time_budget_hours=0.33, wall_seconds=1.0,
                              epochs_completed=1, threads=None, gate=[_row("field", 0.1, 0.5)], better=better,
                              verdict="", scoring_note="")

    assert not promote_if_better(report(False), tmp_path, "cand") and read_active(tmp_path) is None
    assert promote_if_better(report(True), tmp_path, "cand") and read_active(tmp_path) == "cand"
