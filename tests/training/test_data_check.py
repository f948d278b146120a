"""`check_dataset`: every kind of problem is found and names its file (and line)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.training.data_samples import picture, shared_dataset, write_image, write_yolo_dataset
from training.data.check import check_dataset, format_report
from training.trainset import DatasetError


def _messages(report: object, attr: str = "problems") -> list[str]:
    return [str(p) for p in getattr(report, attr)]


def test_clean_dataset_counts_per_split_and_class(tmp_path: Path) -> None:
    root = write_yolo_dataset(tmp_path / "ds", {"train": 3, "val": 2})
    (root / "labels" / "val" / "img_4.txt").write_text("", encoding="utf-8")  # a background image
    report = check_dataset(root)
    assert report.ok and not report.warnings
    assert report.splits["train"].images == 3 and report.splits["val"].background == 1
    assert dict(report.splits["train"].boxes) == {0: 3, 1: 3}
    table = format_report(report)
    assert "train" in table and "crop" in table and "weed" in table and "total" in table


@pytest.mark.parametrize(("line", "message"), [
    ("0 0.5 0.5 0.2", "expected 5 fields"),
    ("2 0.5 0.5 0.2 0.2", "class 2 is not in 0..1"),
    ("crop 0.5 0.5 0.2 0.2", "is not an integer"),
    ("0 0.5 1.2 0.2 0.2", r"must lie in \[0, 1\]"),
    ("0 0.5 0.5 0 0.2", "width and height must be > 0"),
    ("0 0.5 nan? 0.2 0.2", "must be numbers"),
])
def test_bad_label_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    root = write_yolo_dataset(tmp_path / "ds")
    label = root / "labels" / "train" / "img_1.txt"
    label.write_text(f"0 0.5 0.5 0.2 0.2\n\n{line}\n", encoding="utf-8")
    report = check_dataset(root)
    assert not report.ok
    assert len(report.problems) == 1
    problem = report.problems[0]
    assert problem.path == label and problem.line == 3
    assert str(problem).startswith(f"{label}:3: ")
    assert re.search(message, problem.message)


def test_corrupt_and_truncated_images(tmp_path: Path) -> None:
    root = write_yolo_dataset(tmp_path / "ds", {"train": 4})
    train = root / "images" / "train"
    (train / "img_0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    (train / "img_1.png").write_bytes(b"")
    jpeg = write_image(train / "img_2.jpg", picture(7, 320, 240))
    (train / "img_2.png").unlink()
    jpeg.write_bytes(jpeg.read_bytes()[:-200])  # cut off, as by an interrupted copy
    messages = _messages(check_dataset(root))
    broken = "image does not decode (corrupt, truncated or not an image)"
    assert f"{train / 'img_0.png'}: {broken}" in messages
    assert f"{train / 'img_1.png'}: empty file" in messages
    assert f"{jpeg}: {broken}" in messages
    assert len(messages) == 3


def test_duplicate_images_within_and_across_splits(tmp_path: Path) -> None:
    root = write_yolo_dataset(tmp_path / "ds", {"train": 2, "val": 1})
    shutil.copyfile(root / "images/train/img_0.png", root / "images/train/copy.png")
    shutil.copyfile(root / "labels/train/img_0.txt", root / "labels/train/copy.txt")
    shutil.copyfile(root / "images/train/img_1.png", root / "images/val/img_1b.png")
    shutil.copyfile(root / "labels/train/img_1.txt", root / "labels/val/img_1b.txt")
    train, val = root / "images/train", root / "images/val"
    assert _messages(check_dataset(root)) == [  # train is read first, in sorted order
        f"{train / 'img_0.png'}: duplicate image: same bytes as {train / 'copy.png'}",
        f"{val / 'img_1b.png'}: duplicate image: same bytes as {train / 'img_1.png'}",
    ]


def test_missing_labels_and_orphans_are_warnings_unless_strict(tmp_path: Path) -> None:
    root = write_yolo_dataset(tmp_path / "ds", {"train": 2})
    (root / "labels/train/img_0.txt").unlink()
    (root / "labels/train/ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n", encoding="utf-8")
    report = check_dataset(root)
    assert report.ok
    warnings = _messages(report, "warnings")
    assert f"{root / 'labels/train/img_0.txt'}: image without a label file (read as background)" in warnings
    assert f"{root / 'labels/train/ghost.txt'}: label file without an image" in warnings
    strict = check_dataset(root, strict=True)
    assert not strict.ok and len(strict.problems) == 2


def test_missing_split_folder_and_list_splits(tmp_path: Path) -> None:
    root = write_yolo_dataset(tmp_path / "ds", {"train": 2})
    data = yaml.safe_load((root / "data.yaml").read_text(encoding="utf-8"))
    (root / "train.txt").write_text("./images/train/img_0.png\n./images/train/img_0.png\n"
                                    "./images/train/img_1.png\n./images/train/nope.png\n", encoding="utf-8")
    data.update(train="train.txt", val="images/val")
    (root / "data.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    messages = _messages(check_dataset(root))
    assert f"{root / 'train.txt'}:4: listed image not found: ./images/train/nope.png" in messages
    assert any("'val' points at" in m and m.startswith(str(root / "data.yaml")) for m in messages)
    assert len(messages) == 2  # a repeated list entry is oversampling, not a duplicate


def test_unusable_dataset_yaml(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset folder not found"):
        check_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="dataset YAML not found"):
        check_dataset(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "data.yaml").write_text("names: [crop, weed\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="is not valid YAML"):
        check_dataset(bad)
    (bad / "data.yaml").write_text("names: 3\ntrain: images/train\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="is not a YOLO data YAML"):
        check_dataset(bad)
    (bad / "data.yaml").write_text("names: [crop]\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="no train/val/test split"):
        check_dataset(bad)


def test_corrupted_copy_of_cwfid_fails_naming_the_files(tmp_path: Path) -> None:
    shared = shared_dataset("cwfid")
    copy = tmp_path / "cwfid"
    for split in ("train", "val"):
        (copy / "images" / split).mkdir(parents=True)
        (copy / "labels" / split).mkdir(parents=True)
        for image in sorted((shared / "images" / split).iterdir())[:2]:
            shutil.copyfile(image, copy / "images" / split / image.name)
            label = shared / "labels" / split / f"{image.stem}.txt"
            shutil.copyfile(label, copy / "labels" / split / label.name)
    shutil.copyfile(shared / "data.yaml", copy / "data.yaml")
    assert check_dataset(copy).ok
    bad_image = sorted((copy / "images" / "train").iterdir())[0]
    data = bytearray(bad_image.read_bytes())
    data[100:4000] = b"\x00" * 3900  # smashes the PNG header chunks
    bad_image.write_bytes(bytes(data))
    bad_label = sorted((copy / "labels" / "val").iterdir())[1]
    lines = bad_label.read_text(encoding="utf-8").splitlines()
    lines[1] = "1 0.5 0.5 0.2"
    bad_label.write_text("\n".join(lines) + "\n", encoding="utf-8")
    messages = _messages(check_dataset(copy))
    assert f"{bad_label}:2: expected 5 fields (class cx cy w h), got 4" in messages
    assert any(m.startswith(f"{bad_image}: ") for m in messages)
    assert len(messages) == 2
