"""`weedscan data add-field`: the YOLO and COCO exports of CVAT, Label Studio and Roboflow, written
here in each tool's own layout, come in as field datasets that the trainer reads as they are."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from serving.fields.store import FieldStore
from tests import images
from training.cli import app
from training.data.check import check_dataset
from training.trainset import YoloDataset

runner = CliRunner()
W, H = 320, 240


def photo(seed: int, ext: str = ".jpg") -> bytes:
    return images.encode(images.field_like(W, H, seed=seed), ext)


def yolo_line(cls: int, x1: float, y1: float, x2: float, y2: float) -> str:
    return f"{cls} {(x1 + x2) / 2 / W:.6f} {(y1 + y2) / 2 / H:.6f} {(x2 - x1) / W:.6f} {(y2 - y1) / H:.6f}\n"


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def add_field(data_dir: Path, *args: str):  # noqa: ANN201 - click's Result
    return runner.invoke(app, ["data", "add-field", *args, "--data-dir", str(data_dir)])


def one_error(result) -> str:  # noqa: ANN001
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def labels_of(folder: Path) -> dict[str, list[str]]:
    """split/stem of each label file -> its lines, sorted (ids are sha256 prefixes)."""
    return {str(p.relative_to(folder / "labels")): sorted(p.read_text(encoding="utf-8").splitlines())
            for p in sorted((folder / "labels").rglob("*.txt"))}


def assert_trainer_reads(folder: Path, splits: dict[str, int]) -> None:
    report = check_dataset(folder, strict=True)
    assert report.ok, report.problems
    dataset = YoloDataset.from_yaml(folder)
    assert dataset.names == ["crop", "weed"]
    assert {s: len(dataset.images(s)) for s in dataset.splits} == splits
    card = yaml.safe_load((folder / "card.yaml").read_text(encoding="utf-8"))
    assert card["splits"] == splits and card["licence"]


# --- each tool's export layout ------------------------------------------------------------------

def roboflow_yolov8(root: Path) -> Path:
    """Roboflow "YOLOv8": data.yaml (paths ../train/images ...) and SPLIT/images + SPLIT/labels."""
    write(root / "data.yaml", "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n"
                              "nc: 3\nnames: ['Carrot', 'Thistle', 'Stone']\nroboflow:\n  version: 1\n")
    write(root / "README.roboflow.txt", "exported from roboflow")
    write(root / "train/images/IMG_1_jpg.rf.abc.jpg", photo(1))
    write(root / "train/labels/IMG_1_jpg.rf.abc.txt", yolo_line(0, 10, 10, 60, 80) + yolo_line(1, 100, 100, 150, 200))
    write(root / "train/images/IMG_2_jpg.rf.def.jpg", photo(2))
    write(root / "train/labels/IMG_2_jpg.rf.def.txt", yolo_line(2, 0, 0, 30, 30))
    write(root / "valid/images/IMG_3_jpg.rf.ghi.jpg", photo(3))
    write(root / "valid/labels/IMG_3_jpg.rf.ghi.txt", yolo_line(1, 5, 5, 50, 50))
    return root


def test_roboflow_yolo_export_with_class_map_and_splits(tmp_path: Path) -> None:
    source = roboflow_yolov8(tmp_path / "export")
    result = add_field(tmp_path / "data", "carrots", "--from", str(source), "--crop", "carrot",
                       "--map", "Carrot=crop", "--map", "Thistle=weed", "--map", "Stone=drop")
    assert result.exit_code == 0, result.output
    assert "yolo export" in result.output and "3 new photo(s) (train 2, val 1)" in result.output
    assert "dropped 1 box(es) of Stone" in result.output
    folder = tmp_path / "data" / "carrots"
    assert_trainer_reads(folder, {"train": 2, "val": 1})
    lines = labels_of(folder)
    assert sorted(len(v) for v in lines.values()) == [0, 1, 2]
    assert sorted(line.split()[0] for v in lines.values() for line in v) == ["0", "1", "1"]
    info = FieldStore(tmp_path / "data", 10 ** 9, 10 ** 8).get_dataset("carrots")
    assert (info.crop, info.licence, info.images, info.counts) == ("carrot", "private", 3, {"crop": 1, "weed": 2})


def test_cvat_yolo_1_1_export(tmp_path: Path) -> None:
    """CVAT "YOLO 1.1": obj.data, obj.names, train.txt, obj_train_data/ with image + txt pairs."""
    root = tmp_path / "cvat"
    write(root / "obj.names", "crop\nweed\n")
    write(root / "obj.data", "classes = 2\ntrain = data/train.txt\nnames = data/obj.names\nbackup = backup/\n")
    write(root / "train.txt", "data/obj_train_data/frame_0.png\ndata/obj_train_data/frame_1.png\n")
    write(root / "obj_train_data/frame_0.png", photo(4, ".png"))
    write(root / "obj_train_data/frame_0.txt", yolo_line(1, 20, 20, 40, 40))
    write(root / "obj_train_data/frame_1.png", photo(5, ".png"))
    write(root / "obj_train_data/frame_1.txt", "")
    result = add_field(tmp_path / "data", "cvat-field", "--from", str(root), "--crop", "onion")
    assert result.exit_code == 0, result.output
    assert_trainer_reads(tmp_path / "data" / "cvat-field", {"train": 2})


def test_cvat_ultralytics_export_as_a_zip(tmp_path: Path) -> None:
    """CVAT "Ultralytics YOLO Detection": data.yaml with {id: name}, images/train, labels/train."""
    root = tmp_path / "cvat-ul"
    write(root / "data.yaml", "path: .\ntrain: train.txt\nnames:\n  0: weed\n  1: crop\n")
    write(root / "train.txt", "images/train/a.jpg\n")
    write(root / "images/train/a.jpg", photo(6))
    write(root / "labels/train/a.txt", yolo_line(0, 10, 10, 20, 20) + yolo_line(1, 30, 30, 90, 90))
    archive = tmp_path / "task_1-ultralytics.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in root.rglob("*"):
            if path.is_file():
                z.write(path, path.relative_to(root).as_posix())
    result = add_field(tmp_path / "data", "zipped", "--from", str(archive), "--crop", "leek")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "data" / "zipped"
    # weed (0 in the export) becomes 1, crop (1) becomes 0
    assert [sorted(line.split()[0] for line in v) for v in labels_of(folder).values()] == [["0", "1"]]
    assert_trainer_reads(folder, {"train": 1})


def test_label_studio_yolo_export(tmp_path: Path) -> None:
    """Label Studio "YOLO": classes.txt, notes.json, images/ and labels/ side by side."""
    root = tmp_path / "ls"
    write(root / "classes.txt", "Weed\nCrop\n")
    write(root / "notes.json", json.dumps({"categories": [{"id": 0, "name": "Weed"}, {"id": 1, "name": "Crop"}],
                                           "info": {"year": 2026, "version": "1.0", "contributor": "Label Studio"}}))
    write(root / "images/1f2e3d4c-IMG_7.jpg", photo(7))
    write(root / "labels/1f2e3d4c-IMG_7.txt", yolo_line(0, 1, 1, 100, 100) + yolo_line(1, 150, 20, 300, 220))
    write(root / "images/9a8b7c6d-IMG_8.jpg", photo(8))  # no label file: a photo without plants
    result = add_field(tmp_path / "data", "ls-field", "--from", str(root), "--crop", "beet",
                       "--map", "Weed=weed", "--map", "Crop=crop", "--licence", "CC-BY-4.0")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "data" / "ls-field"
    assert_trainer_reads(folder, {"train": 2})
    assert yaml.safe_load((folder / "card.yaml").read_text(encoding="utf-8"))["licence"] == "CC-BY-4.0"


def coco(images_: list[dict], annotations: list[dict], categories: list[dict]) -> str:
    return json.dumps({"info": {"description": "test"}, "licenses": [], "images": images_,
                       "annotations": annotations, "categories": categories})


def test_cvat_coco_export(tmp_path: Path) -> None:
    """CVAT "COCO 1.0": annotations/instances_default.json and images/."""
    root = tmp_path / "cvat-coco"
    write(root / "images/field_a.jpg", photo(9))
    write(root / "images/field_b.jpg", photo(10))
    write(root / "annotations/instances_default.json", coco(
        [{"id": 1, "file_name": "field_a.jpg", "width": W, "height": H},
         {"id": 2, "file_name": "field_b.jpg", "width": W, "height": H}],
        [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [10, 20, 50, 60], "area": 3000, "iscrowd": 0},
         {"id": 2, "image_id": 1, "category_id": 1, "bbox": [300, 200, 40, 60], "area": 2400, "iscrowd": 0}],
        [{"id": 1, "name": "crop", "supercategory": ""}, {"id": 2, "name": "weed", "supercategory": ""}]))
    result = add_field(tmp_path / "data", "cvat-coco", "--from", str(root), "--crop", "carrot")
    assert result.exit_code == 0, result.output
    assert "coco export" in result.output and "1 box(es) clipped" in result.output
    folder = tmp_path / "data" / "cvat-coco"
    assert_trainer_reads(folder, {"train": 2})
    store = FieldStore(tmp_path / "data", 10 ** 9, 10 ** 8)
    boxes = sorted((label.class_name, label.box.x1, label.box.y1, label.box.x2, label.box.y2)
                   for image in store.list_images("cvat-coco")
                   for label in store.get_image("cvat-coco", image.id).labels)
    assert boxes == [("crop", 300.0, 200.0, 320.0, 240.0), ("weed", 10.0, 20.0, 60.0, 80.0)]


def test_label_studio_coco_export_given_as_its_json(tmp_path: Path) -> None:
    """Label Studio "COCO": result.json whose file_name is images/NAME, and images/."""
    root = tmp_path / "ls-coco"
    write(root / "images/5e6f-IMG_11.jpg", photo(11))
    json_file = write(root / "result.json", coco(
        [{"width": W, "height": H, "id": 0, "file_name": "images/5e6f-IMG_11.jpg"}],
        [{"id": 0, "image_id": 0, "category_id": 0, "segmentation": [], "bbox": [5.5, 6.5, 40.25, 30.0],
          "ignore": 0, "iscrowd": 0, "area": 1207.5}],
        [{"id": 0, "name": "Weed"}, {"id": 1, "name": "Carrot"}]))
    result = add_field(tmp_path / "data", "ls-coco", "--from", str(json_file), "--crop", "carrot",
                       "--map", "Weed=weed", "--map", "Carrot=crop")
    assert result.exit_code == 0, result.output
    assert_trainer_reads(tmp_path / "data" / "ls-coco", {"train": 1})


def test_roboflow_coco_export_with_splits_and_its_supercategory(tmp_path: Path) -> None:
    """Roboflow "COCO": SPLIT/_annotations.coco.json beside the split's images; category 0 is
    the project's supercategory, which labels no box."""
    root = tmp_path / "rf-coco"
    categories = [{"id": 0, "name": "weeds-abc", "supercategory": "none"},
                  {"id": 1, "name": "crop", "supercategory": "weeds-abc"},
                  {"id": 2, "name": "weed", "supercategory": "weeds-abc"}]
    for split, seed in (("train", 12), ("valid", 13), ("test", 14)):
        name = f"IMG_{seed}_jpg.rf.0123.jpg"
        write(root / split / name, photo(seed))
        write(root / split / "_annotations.coco.json", coco(
            [{"id": 0, "license": 1, "file_name": name, "height": H, "width": W,
              "date_captured": "2026-01-01T00:00:00+00:00"}],
            [{"id": 0, "image_id": 0, "category_id": 2, "bbox": [10, 10, 30, 30], "area": 900,
              "segmentation": [], "iscrowd": 0}], categories))
    result = add_field(tmp_path / "data", "rf-coco", "--from", str(root), "--crop", "maize")
    assert result.exit_code == 0, result.output
    assert_trainer_reads(tmp_path / "data" / "rf-coco", {"train": 1, "val": 1, "test": 1})


# --- bad input ----------------------------------------------------------------------------------

def test_an_unmapped_class_is_one_error_naming_it_and_nothing_is_made(tmp_path: Path) -> None:
    source = roboflow_yolov8(tmp_path / "export")
    line = one_error(add_field(tmp_path / "data", "carrots", "--from", str(source), "--crop", "carrot",
                               "--map", "Carrot=crop"))
    assert "Thistle" in line and "Stone" in line and "--map" in line
    assert not (tmp_path / "data").exists()
    line = one_error(add_field(tmp_path / "data", "carrots", "--from", str(source), "--crop", "carrot",
                               "--map", "Carot=crop"))
    assert "Carot" in line and "not in the export" in line
    assert "NAME=crop|weed|drop" in one_error(add_field(tmp_path / "data", "carrots", "--from", str(source),
                                                        "--map", "Carrot=tree"))


@pytest.mark.parametrize("name", ["../evil", "Carrots", "a/b", ".."])
def test_bad_names_are_refused_before_anything_is_written(tmp_path: Path, name: str) -> None:
    source = roboflow_yolov8(tmp_path / "export")
    line = one_error(add_field(tmp_path / "data", name, "--from", str(source), "--crop", "carrot",
                               "--map", "Carrot=crop", "--map", "Thistle=weed", "--map", "Stone=drop"))
    assert "invalid dataset name" in line
    assert not (tmp_path / "data").exists() and not (tmp_path / "evil").exists()


def test_broken_files_fail_cleanly_and_leave_no_dataset(tmp_path: Path) -> None:
    root = tmp_path / "broken"
    write(root / "classes.txt", "crop\nweed\n")
    write(root / "images/a.jpg", photo(15))
    write(root / "labels/a.txt", "1 0.5 0.5 0.2\n")
    line = one_error(add_field(tmp_path / "data", "broken", "--from", str(root), "--crop", "x"))
    assert "labels/a.txt:1" in line and "5 fields" in line
    write(root / "labels/a.txt", "7 0.5 0.5 0.2 0.2\n")
    assert "class 7" in one_error(add_field(tmp_path / "data", "broken", "--from", str(root), "--crop", "x"))
    write(root / "labels/a.txt", "1 0.5 0.5 0.2 0.2\n")
    write(root / "images/b.jpg", photo(16)[:700])  # truncated photo
    line = one_error(add_field(tmp_path / "data", "broken", "--from", str(root), "--crop", "x"))
    assert "b.jpg" in line
    assert FieldStore(tmp_path / "data", 10 ** 9, 10 ** 8).list_datasets() == []
    assert not (tmp_path / "data" / "broken").exists()
    assert "not found" in one_error(add_field(tmp_path / "data", "x", "--from", str(tmp_path / "nope"), "--crop", "x"))
    empty = tmp_path / "empty"
    write(empty / "classes.txt", "crop\nweed\n")
    assert "no images found" in one_error(add_field(tmp_path / "data", "x", "--from", str(empty), "--crop", "x"))
    write(tmp_path / "bad.json", "{not json")
    assert "not a COCO" in one_error(add_field(tmp_path / "data", "x", "--from", str(tmp_path / "bad.json"),
                                               "--crop", "x"))


def test_existing_dataset_needs_append_and_duplicate_photos_are_kept_once(tmp_path: Path) -> None:
    root = tmp_path / "ls"
    write(root / "classes.txt", "crop\nweed\n")
    write(root / "images/a.jpg", photo(17))
    write(root / "labels/a.txt", yolo_line(1, 10, 10, 50, 50))
    write(root / "images/copy-of-a.jpg", photo(17))  # the same photo twice in one export
    write(root / "labels/copy-of-a.txt", yolo_line(1, 10, 10, 50, 50))
    first = add_field(tmp_path / "data", "field", "--from", str(root), "--crop", "carrot")
    assert first.exit_code == 0, first.output
    assert "1 new photo(s)" in first.output and "1 already there" in first.output
    assert "--append" in one_error(add_field(tmp_path / "data", "field", "--from", str(root)))
    write(root / "images/c.jpg", photo(18))
    again = add_field(tmp_path / "data", "field", "--from", str(root), "--append")
    assert again.exit_code == 0, again.output
    assert "1 new photo(s)" in again.output and "field: 2 photo(s)" in again.output
    assert "--crop" in one_error(add_field(tmp_path / "data", "other", "--from", str(root)))


def test_help_has_an_example() -> None:
    result = runner.invoke(app, ["data", "add-field", "--help"])
    assert result.exit_code == 0 and "Example:" in result.output and "weedscan data add-field" in result.output
