"""Converters native -> YOLO on small native-format samples written by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.training.data_samples import (
    CWFID_SIZE,
    shared_dataset,
    write_cwfid_release,
    write_sesame_release,
    write_yolo_dataset,
)
from training.data.cards import CARDS_ENV, DatasetCard, load_card
from training.data.check import check_dataset
from training.data.convert import cwfid_boxes, detect_layout, import_dataset
from training.data.split import group_split, near_duplicate_groups, seeded_split
from training.trainset import DatasetError, YoloDataset


@pytest.fixture(autouse=True)
def _shipped_cards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CARDS_ENV, raising=False)


@pytest.fixture
def cwfid() -> DatasetCard:
    return load_card("cwfid")


def _labels(path: Path) -> list[list[float]]:
    return [[float(v) for v in line.split()] for line in path.read_text(encoding="utf-8").splitlines()]


def _pixels(row: list[float]) -> tuple[int, float, float, float, float]:
    width, height = CWFID_SIZE
    cls, cx, cy, w, h = row
    return (int(cls), round((cx - w / 2) * width, 3), round((cy - h / 2) * height, 3),
            round((cx + w / 2) * width, 3), round((cy + h / 2) * height, 3))


def test_cwfid_polygons_become_clipped_boxes(tmp_path: Path, cwfid: DatasetCard) -> None:
    root = write_cwfid_release(tmp_path / "cwfid", ids=(1,))
    boxes = cwfid_boxes(cwfid, root / "annotations" / "001_annotation.yaml", CWFID_SIZE)
    crop, weed = (_pixels(list(b)) for b in boxes)  # the single point is dropped
    assert crop == (0, 10.0, 20.0, 30.0, 40.0)
    assert weed == (1, 100.0, 50.0, 130.0, 90.0)   # x 140 clipped to the image width 130


def test_cwfid_mask_tightens_the_box(tmp_path: Path, cwfid: DatasetCard) -> None:
    root = write_cwfid_release(tmp_path / "cwfid", ids=(1,), masks=True)
    ann = root / "annotations" / "001_annotation.yaml"
    boxes = cwfid_boxes(cwfid, ann, CWFID_SIZE, ann.with_suffix(".png"))
    crop, weed = (_pixels(list(b)) for b in boxes)
    assert crop == (0, 15.0, 25.0, 25.0, 35.0)  # the painted pixels inside the polygon
    _, x1, y1, x2, y2 = weed
    assert x1 >= 100 and y1 >= 50 and x2 <= 130 and y2 <= 90


@pytest.mark.parametrize(("body", "message"), [
    ("annotation: [{type: weed}]", "plant 0 needs 'type' and numeric"),
    ("annotation: [{type: weed, points: {x: [1, 2], y: [1]}}]", "2 x and 1 y points"),
    ("annotation: [{type: tree, points: {x: [1, 9], y: [1, 9]}}]", "'tree' is not in the class mapping"),
    ("filename: x.png", "no 'annotation' list"),
    ("annotation: [unclosed", "is not valid YAML"),
])
def test_cwfid_bad_annotations_name_the_file(tmp_path: Path, cwfid: DatasetCard, body: str,
                                             message: str) -> None:
    ann = tmp_path / "007_annotation.yaml"
    ann.write_text(body, encoding="utf-8")
    with pytest.raises(DatasetError, match=message) as info:
        cwfid_boxes(cwfid, ann, CWFID_SIZE)
    assert "007_annotation.yaml" in str(info.value)


def test_import_cwfid_native_uses_its_split_file(tmp_path: Path, cwfid: DatasetCard) -> None:
    ids = tuple(range(1, 13))
    split = {"train": [1, 2, 4, 5, 6, 7, 8, 10, 11, 12], "test": [3, 6, 9]}  # 6 in both: test
    root = write_cwfid_release(tmp_path / "unzipped" / "dataset-master", ids=ids, split=split)
    result = import_dataset(cwfid, tmp_path / "unzipped", tmp_path / "out", progress=False)
    assert result.layout == "native"
    ds = YoloDataset.from_yaml(result.data_yaml)
    assert ds.names == ["crop", "weed"]
    stems = {s: [int(p.stem.split("_")[1]) for p in ds.images(s)] for s in ds.splits}
    # train ids without 6: 1 2 4 5 7 8 10 11 12 -> val = every 5th from the 3rd = 4, 11
    assert stems == {"train": [1, 2, 5, 7, 8, 10, 12], "val": [4, 11], "test": [3, 6, 9]}
    image = tmp_path / "out" / "images" / "train" / "cwfid_001.png"
    assert image.read_bytes() == (root / "images" / "001_image.png").read_bytes()  # not re-encoded
    assert len(_labels(tmp_path / "out" / "labels" / "train" / "cwfid_001.txt")) == 2
    assert result.boxes == 2 * len(ids)
    assert "non-commercial" in (tmp_path / "out" / "SOURCE.md").read_text(encoding="utf-8")
    assert check_dataset(tmp_path / "out").ok


def test_import_cwfid_without_split_file_is_seeded(tmp_path: Path, cwfid: DatasetCard) -> None:
    write_cwfid_release(tmp_path / "src", ids=tuple(range(1, 11)), split={})
    first = import_dataset(cwfid, tmp_path / "src", tmp_path / "a", progress=False)
    second = import_dataset(cwfid, tmp_path / "src", tmp_path / "b", progress=False)
    assert first.images == second.images and set(first.images) == {"train", "val", "test"}
    assert sorted(p.name for p in (tmp_path / "a/images/val").iterdir()) == \
        sorted(p.name for p in (tmp_path / "b/images/val").iterdir())


def test_import_cwfid_missing_annotation(tmp_path: Path, cwfid: DatasetCard) -> None:
    root = write_cwfid_release(tmp_path / "src", ids=(1, 2, 3))
    (root / "annotations" / "002_annotation.yaml").unlink()
    with pytest.raises(DatasetError, match="annotation missing for .*002_image.png"):
        import_dataset(cwfid, root, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_import_sesame_native_keeps_near_duplicates_together(tmp_path: Path) -> None:
    card = load_card("sesame")
    write_sesame_release(tmp_path / "WeedDetector-main", bases=4)
    result = import_dataset(card, tmp_path / "WeedDetector-main", tmp_path / "out", progress=False)
    assert result.layout == "native" and sum(result.images.values()) == 12
    assert result.images["test"] % 3 == 0 and result.images["val"] % 3 == 0
    out = tmp_path / "out"
    for split in result.images:  # every base photo's 3 variants share one split
        stems = sorted(int(p.stem.rsplit("_", 1)[1]) for p in (out / "images" / split).iterdir())
        assert {s // 3 for s in stems} == {s // 3 for s in stems if s % 3 == 0}
        assert len(stems) % 3 == 0
    label = next((out / "labels" / "train").iterdir())
    assert label.read_text(encoding="utf-8") in ("0 0.500000 0.500000 0.250000 0.300000\n",
                                 "1 0.500000 0.500000 0.250000 0.300000\n")
    assert check_dataset(out).ok


def test_import_sesame_bad_label_names_file_and_line(tmp_path: Path) -> None:
    root = write_sesame_release(tmp_path / "src", bases=1)
    bad = root / "dataset" / "agri_data" / "data" / "agri_0_1.txt"
    bad.write_text("0 0.5 0.5 0.2 0.2\n1 0.5 1.5 0.2 0.2\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"agri_0_1.txt:2: coordinates must lie in \[0, 1\]"):
        import_dataset(load_card("sesame"), root, tmp_path / "out", progress=False)


def test_import_yolo_folder_is_detected_and_copied(tmp_path: Path, cwfid: DatasetCard) -> None:
    src = write_yolo_dataset(tmp_path / "src", {"train": 3, "val": 2})
    assert detect_layout(cwfid, src) == ("yolo", src / "data.yaml")
    result = import_dataset(cwfid, src, tmp_path / "out", progress=False)
    assert result.layout == "yolo" and result.images == {"train": 3, "val": 2}
    assert sorted(p.name for p in (tmp_path / "out/labels/val").iterdir()) == ["img_3.txt", "img_4.txt"]
    assert _labels(tmp_path / "out/labels/val/img_3.txt") == _labels(src / "labels/val/img_3.txt")


def test_import_yolo_folder_with_foreign_classes_fails(tmp_path: Path, cwfid: DatasetCard) -> None:
    src = write_yolo_dataset(tmp_path / "src", names=["maize", "weed"])
    with pytest.raises(DatasetError, match="'maize' is not in the class mapping"):
        import_dataset(cwfid, src, tmp_path / "out", progress=False)


def test_shared_cwfid_is_detected_as_yolo(cwfid: DatasetCard) -> None:
    folder = shared_dataset("cwfid")
    assert detect_layout(cwfid, folder) == ("yolo", folder / "data.yaml")


def test_neither_native_nor_yolo(tmp_path: Path, cwfid: DatasetCard) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.txt").write_text("hi", encoding="utf-8")
    with pytest.raises(DatasetError, match="neither a YOLO dataset .* nor a native cwfid release"):
        detect_layout(cwfid, tmp_path / "junk")
    with pytest.raises(DatasetError, match="folder not found"):
        detect_layout(cwfid, tmp_path / "missing")


def test_output_never_overwrites_sources_or_other_files(tmp_path: Path, cwfid: DatasetCard) -> None:
    src = write_yolo_dataset(tmp_path / "src")
    with pytest.raises(DatasetError, match="overlaps the source"):
        import_dataset(cwfid, src, src, progress=False)
    with pytest.raises(DatasetError, match="overlaps the source"):
        import_dataset(cwfid, src, src / "sub", progress=False)
    other = tmp_path / "home"
    other.mkdir()
    (other / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(DatasetError, match="is not a dataset folder"):
        import_dataset(cwfid, src, other, progress=False)
    assert (other / "notes.txt").read_text(encoding="utf-8") == "keep me"
    import_dataset(cwfid, src, tmp_path / "out", progress=False)
    import_dataset(cwfid, src, tmp_path / "out", progress=False)  # a previous import is replaced
    assert yaml.safe_load((tmp_path / "out" / "data.yaml").read_text(encoding="utf-8"))["names"] == ["crop", "weed"]


def test_group_split_is_seeded_and_keeps_groups() -> None:
    groups = [[f"g{g}_{i}" for i in range(g % 3 + 1)] for g in range(30)]
    first = group_split(groups, seed=0, val=0.1, test=0.1)
    assert first == group_split(groups, seed=0, val=0.1, test=0.1)
    assert first != group_split(groups, seed=1, val=0.1, test=0.1)
    for group in groups:
        assert len({first[k] for k in group}) == 1
    counts = {s: sum(1 for v in first.values() if v == s) for s in ("train", "val", "test")}
    assert 6 <= counts["val"] <= 9 and 6 <= counts["test"] <= 9  # ~10% of 60
    small = seeded_split(["a", "b", "c"], seed=0, val=0.1, test=0.1)
    assert sorted(small.values()) == ["test", "train", "val"]  # at least one each


def test_near_duplicate_groups_join_flips_and_turns(tmp_path: Path) -> None:
    root = write_sesame_release(tmp_path / "s", bases=3)
    images = sorted((root / "dataset/agri_data/data").glob("*.jpeg"),
                    key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    groups = near_duplicate_groups(images)
    assert sorted(sorted(int(p.stem.rsplit("_", 1)[1]) for p in g) for g in groups) == \
        [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
