"""merge: several YOLO datasets -> one on crop, weed, with remap, repeats, copy or link."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.training.data_samples import write_yolo_dataset
from training.data.check import check_dataset
from training.data.merge import merge_datasets
from training.trainset import DatasetError


def test_merge_links_and_keeps_labels(tmp_path: Path) -> None:
    a = write_yolo_dataset(tmp_path / "a", {"train": 2, "val": 1}, seed=1)
    b = write_yolo_dataset(tmp_path / "b", {"train": 3, "val": 1}, seed=2)
    data_yaml = merge_datasets([a, b], tmp_path / "m", progress=False)
    out = tmp_path / "m"
    assert data_yaml == out / "data.yaml"
    data = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    assert data == {"train": "images/train", "val": "images/val", "nc": 2, "names": ["crop", "weed"]}
    train = sorted(p.name for p in (out / "images" / "train").iterdir())
    assert train == ["a__img_1000.png", "a__img_1001.png", "b__img_2000.png", "b__img_2001.png",
                     "b__img_2002.png"]
    link = out / "images" / "train" / "a__img_1000.png"
    assert link.is_symlink() and link.resolve() == (a / "images/train/img_1000.png").resolve()
    assert (out / "labels/train/a__img_1000.txt").read_text(encoding="utf-8") == \
        "0 0.500000 0.500000 0.200000 0.200000\n1 0.250000 0.300000 0.100000 0.200000\n"
    report = check_dataset(out)
    assert report.ok and report.splits["train"].images == 5


def test_merge_copy_remap_and_repeat(tmp_path: Path) -> None:
    a = write_yolo_dataset(tmp_path / "beets", {"train": 2, "val": 1},
                           names=["sugarbeet", "weed", "stone"], seed=1)
    b = write_yolo_dataset(tmp_path / "big", {"train": 3, "val": 1}, seed=2)
    merge_datasets([a, b], tmp_path / "m", repeats={"beets": 3},
                   remap={"sugarbeet": "crop", "stone": "drop"}, mode="copy", progress=False)
    out = tmp_path / "m"
    assert not (out / "images/train/beets__img_1000.png").is_symlink()
    # img_1000: class 1000 % 3 = 1 (weed) then 1001 % 3 = 2 (stone, dropped)
    labels = out / "labels/train"
    assert (labels / "beets__img_1000.txt").read_text(encoding="utf-8") == "1 0.500000 0.500000 0.200000 0.200000\n"
    # img_1001: stone (dropped), then sugarbeet -> crop
    assert (labels / "beets__img_1001.txt").read_text(encoding="utf-8") == "0 0.250000 0.300000 0.100000 0.200000\n"
    data = yaml.safe_load((out / "data.yaml").read_text(encoding="utf-8"))
    assert data["train"] == "train.txt"
    entries = (out / "train.txt").read_text(encoding="utf-8").split()
    assert len(entries) == 2 * 3 + 3 and entries.count("./images/train/beets__img_1000.png") == 3
    assert check_dataset(out).ok


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"repeats": {"nope": 2}}, r"--repeat names unknown dataset\(s\): nope"),
    ({"remap": {"weed": "tree"}}, "--remap target 'tree'"),
])
def test_merge_bad_options(tmp_path: Path, kwargs: dict[str, dict], message: str) -> None:
    a = write_yolo_dataset(tmp_path / "a")
    with pytest.raises(DatasetError, match=message):
        merge_datasets([a], tmp_path / "m", progress=False, **kwargs)


def test_merge_refuses_foreign_classes_and_name_clashes(tmp_path: Path) -> None:
    a = write_yolo_dataset(tmp_path / "a", names=["maize", "weed"])
    with pytest.raises(DatasetError, match="class 'maize' is not one of crop, weed; map it with "
                                           "--remap maize=crop"):
        merge_datasets([a], tmp_path / "m", progress=False)
    one = write_yolo_dataset(tmp_path / "x" / "yolo", seed=1)
    two = write_yolo_dataset(tmp_path / "y" / "yolo", seed=2)
    with pytest.raises(DatasetError, match="several datasets are named yolo"):
        merge_datasets([one, two], tmp_path / "m", progress=False)
    assert not (tmp_path / "m").exists()


def test_merge_bad_label_names_file_and_line(tmp_path: Path) -> None:
    a = write_yolo_dataset(tmp_path / "a")
    (a / "labels/train/img_0.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"img_0.txt:2: expected 5 fields"):
        merge_datasets([a], tmp_path / "m", progress=False)
    assert not (tmp_path / "m").exists() and not (tmp_path / ".m.partial").exists()
