"""LabelMe JSON polygons (potato-uav) and Pascal VOC XML (sugarbeet-jmpap) -> YOLO, and the
block split that keeps neighbouring map tiles and both halves of a video frame together."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.netguard import guarded
from tests.training.data_samples import TILE_SIZE, VOC_SIZE, voc_xml, write_labelme_release, write_voc_release
from training.cli import app
from training.data.cards import CARDS_ENV, load_card, load_card_file
from training.data.check import check_dataset
from training.data.convert import detect_layout, import_dataset
from training.data.labelme import labelme_boxes
from training.data.split import block_split
from training.data.voc import voc_boxes, voc_pairs
from training.trainset import DatasetError


@pytest.fixture(autouse=True)
def _shipped_cards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CARDS_ENV, raising=False)


def _pixels(box: tuple[int, float, float, float, float], size: tuple[int, int]) -> tuple:
    (width, height), (cls, cx, cy, w, h) = size, box
    return (cls, round((cx - w / 2) * width, 3), round((cy - h / 2) * height, 3),
            round((cx + w / 2) * width, 3), round((cy + h / 2) * height, 3))


def _split_of(out: Path) -> dict[str, str]:
    return {p.stem: p.parent.name for p in (out / "images").glob("*/*")}


# --- cards ----------------------------------------------------------------------------------

def test_new_cards_name_source_licence_and_classes() -> None:
    potato, beet = load_card("potato-uav"), load_card("sugarbeet-jmpap")
    assert "7680ff97bc5d7586f34c7efa772c97fc96106e9f" in potato.download.url
    assert "e9944887cf4b6279d47b710de009794867413b7d" in beet.download.url
    assert potato.licence.name == beet.licence.name == "MIT"
    assert "10.1016/j.atech.2025.100966" in potato.citation
    assert potato.classes == {"potato": "crop", "weed": "weed"}
    assert beet.classes == {"sugarbeet": "crop", "weed": "weed"}
    assert (potato.image_count, potato.image_size) == (170, (640, 640))
    assert (beet.image_count, beet.image_size) == (120, (512, 512))
    assert potato.split.method == beet.split.method == "blocks"
    assert re.fullmatch(potato.split.key or "", "tile_16_9")
    assert re.fullmatch(beet.split.key or "", "X5-710-1")


@pytest.mark.parametrize(("split", "message"), [
    ("{method: blocks, file: null, seed: 0, val: 0.1, test: 0.1}", "missing field 'split.key'"),
    ("{method: blocks, key: 'tile_(\\d+)', file: null, seed: 0, val: 0.1, test: 0.1}",
     "must have a \\(\\?P<pos>"),
    ("{method: blocks, key: '(?P<pos>', file: null, seed: 0, val: 0.1, test: 0.1}", "not a valid regex"),
    ("{method: blocks, key: '(?P<pos>\\d+)', at: middle, file: null, seed: 0, val: 0.1, test: 0.1}",
     "split.at 'middle'"),
])
def test_bad_block_split_in_a_card(tmp_path: Path, split: str, message: str) -> None:
    text = load_card("potato-uav").path.read_text(encoding="utf-8")
    card = tmp_path / "potato-uav.yaml"
    card.write_text(text[:text.index("\nsplit:")] + f"\nsplit: {split}\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_card_file(card)


# --- block split ----------------------------------------------------------------------------

def test_block_split_keeps_positions_together_and_blocks_contiguous() -> None:
    stems = [f"{v}-{f}-{h}" for v in ("A", "B") for f in range(10, 110, 10) for h in (0, 1)]
    key = r"(?P<seq>[AB])-(?P<pos>\d+)-[01]"
    end = block_split(stems, key, val=0.2, test=0.1)
    for v in ("A", "B"):
        order = [end[f"{v}-{f}-0"] for f in range(10, 110, 10)]
        assert order == ["train"] * 7 + ["val"] * 2 + ["test"]
        assert all(end[f"{v}-{f}-0"] == end[f"{v}-{f}-1"] for f in range(10, 110, 10))
    start = block_split(stems, key, val=0.2, test=0.1, at="start")
    assert [start[f"A-{f}-1"] for f in range(10, 110, 10)] == ["test"] + ["val"] * 2 + ["train"] * 7
    numeric = block_split(["t_2", "t_10", "t_9"], r"t_(?P<pos>\d+)", val=0.1, test=0.1)
    assert numeric == {"t_2": "train", "t_9": "val", "t_10": "test"}  # by number, not text
    with pytest.raises(DatasetError, match="'oops' does not match the split key"):
        block_split(["A-10-0", "oops"], key, val=0.2, test=0.1)
    with pytest.raises(DatasetError, match="'t_x': the split key's pos 'x' is not a number"):
        block_split(["t_x"], r"t_(?P<pos>\w+)", val=0.2, test=0.1)


# --- LabelMe ----------------------------------------------------------------------------------

def test_labelme_polygons_become_clipped_boxes(tmp_path: Path) -> None:
    root = write_labelme_release(tmp_path / "paglab", columns=1, rows=1)
    label = root / "dataset/annotation_json_raw/images/tile_0_0.json"
    boxes = labelme_boxes(load_card("potato-uav"), label, TILE_SIZE)
    assert [_pixels(b, TILE_SIZE) for b in boxes] == [
        (0, 10.0, 5.0, 30.0, 25.0),   # potato -> crop
        (1, 60.0, 30.0, 80.0, 55.0),  # weed, x 95 clipped to the tile width 80
    ]                                 # the zero-width polygon is dropped


@pytest.mark.parametrize(("shape", "body", "message"), [
    ({"label": "tree", "points": [[1, 1], [9, 9]]}, None, "shape 0: .*'tree' is not in the class mapping"),
    ({"label": "weed", "points": [[1, 1]], "shape_type": "point"}, None, "shape_type 'point' cannot"),
    ({"label": "weed", "points": [[1, "a"]]}, None, "list of \\[x, y\\] numbers"),
    ({"label": "weed", "points": [[1, 1], [9, 9]]}, {"imageWidth": 640, "imageHeight": 640},
     "640x640 is not the image's 80x60"),
    (None, {"imageWidth": 80}, "no 'shapes' list"),
])
def test_labelme_bad_files_name_the_file(tmp_path: Path, shape: dict | None, body: dict | None,
                                         message: str) -> None:
    label = tmp_path / "tile_3_4.json"
    label.write_text(json.dumps((body or {}) | ({"shapes": [shape]} if shape else {})), encoding="utf-8")
    with pytest.raises(DatasetError, match=message) as info:
        labelme_boxes(load_card("potato-uav"), label, TILE_SIZE)
    assert "tile_3_4.json" in str(info.value)
    label.write_text("{not json", encoding="utf-8")
    with pytest.raises(DatasetError, match="tile_3_4.json is not valid JSON"):
        labelme_boxes(load_card("potato-uav"), label, TILE_SIZE)


def test_import_potato_uav_splits_by_tile_column(tmp_path: Path) -> None:
    root = write_labelme_release(tmp_path / "src" / "UAV-weed-detection-paper-main", columns=10, rows=2)
    card = load_card("potato-uav")
    assert detect_layout(card, tmp_path / "src") == ("native",
                                                     root / "dataset/annotation_json_raw/images")
    result = import_dataset(card, tmp_path / "src", tmp_path / "out", progress=False)
    assert result.images == {"train": 16, "val": 2, "test": 2} and result.boxes == 40
    split = _split_of(tmp_path / "out")
    for x in range(10):  # a whole column in one split: x 0..7 train, 8 val, 9 test
        want = "test" if x == 9 else "val" if x == 8 else "train"
        assert {split[f"tile_{x}_{y}"] for y in range(2)} == {want}
    image = tmp_path / "out/images/val/tile_8_1.jpg"
    assert image.read_bytes() == (root / "dataset/annotation_json_raw/images/tile_8_1.jpg").read_bytes()
    lines = (tmp_path / "out/labels/val/tile_8_1.txt").read_text(encoding="utf-8").splitlines()
    assert lines == ["0 0.250000 0.250000 0.250000 0.333333", "1 0.875000 0.708333 0.250000 0.416667"]
    assert "MIT" in (tmp_path / "out/SOURCE.md").read_text(encoding="utf-8")
    assert check_dataset(tmp_path / "out", strict=True).ok


# --- Pascal VOC -------------------------------------------------------------------------------

def test_voc_boxes_read_labelimg_edges(tmp_path: Path) -> None:
    xml = tmp_path / "X-10-0.xml"
    xml.write_text(voc_xml("X-10-0.png", objects=[("sugarbeet", 1, 10, 20, 30),
                                                  ("weed", 40, 1, 70, 20),
                                                  ("weed", 5.5, 50, 5.5, 60),
                                                  ("weed", 10.5, 20.25, 30, 40)]), encoding="utf-8")
    boxes = voc_boxes(load_card("sugarbeet-jmpap"), xml, VOC_SIZE)
    assert [_pixels(b, VOC_SIZE) for b in boxes] == [
        (0, 0.0, 10.0, 20.0, 30.0),    # sugarbeet -> crop; LabelImg's xmin 1 is the edge 0
        (1, 40.0, 0.0, 64.0, 20.0),    # ymin 1 -> 0, xmax 70 clipped to 64
        (1, 10.5, 20.25, 30.0, 40.0),  # (the zero-width box before it is dropped)
    ]


@pytest.mark.parametrize(("xml", "message"), [
    (voc_xml("a.png", objects=[("tree", 1, 1, 9, 9)]), "object 0: .*'tree' is not in the class mapping"),
    (voc_xml("a.png", objects=[("weed", "x", 1, 9, 9)]), "object 0 \\('weed'\\) needs numeric bndbox"),
    (voc_xml("a.png", size=(512, 512)), "<size> 512x512 is not the image's 64x64"),
    ("<annotation><object>", "is not valid XML"),
])
def test_voc_bad_files_name_the_file(tmp_path: Path, xml: str, message: str) -> None:
    path = tmp_path / "X3-40-1.xml"
    path.write_text(xml, encoding="utf-8")
    with pytest.raises(DatasetError, match=message) as info:
        voc_boxes(load_card("sugarbeet-jmpap"), path, VOC_SIZE)
    assert "X3-40-1.xml" in str(info.value)


def test_voc_image_must_be_found_once(tmp_path: Path) -> None:
    root = write_voc_release(tmp_path / "repo", videos=("X",), frames=2)
    assert len(voc_pairs(root)) == 4
    (root / "data/train/image/X-30-0.png").unlink()
    with pytest.raises(DatasetError, match="X-30-0.xml: its image 'X-30-0.png' is not found"):
        voc_pairs(root)


def test_import_sugarbeet_keeps_frame_halves_and_neighbours_together(tmp_path: Path) -> None:
    root = write_voc_release(tmp_path / "src" / "YOLOV2-Tensorflow-2.0-main", frames=10)
    assert (root / "data/val/image/X-10-1.png").is_file()  # the repository's val: other halves
    result = import_dataset(load_card("sugarbeet-jmpap"), tmp_path / "src", tmp_path / "out",
                            progress=False)
    assert result.layout == "native" and result.boxes == 2 * 40
    assert result.images == {"train": 24, "val": 8, "test": 8}
    split = _split_of(tmp_path / "out")
    order: dict[str, list[str]] = defaultdict(list)
    for v in ("X", "X2"):
        for frame in range(10, 210, 20):
            assert split[f"{v}-{frame}-0"] == split[f"{v}-{frame}-1"]  # both halves of a frame
            order[v].append(split[f"{v}-{frame}-0"])
    # per video, consecutive frames in contiguous blocks: test (first 2), val (next 2), train
    assert order["X"] == order["X2"] == ["test"] * 2 + ["val"] * 2 + ["train"] * 6
    lines = (tmp_path / "out/labels/train/X2-190-1.txt").read_text(encoding="utf-8").splitlines()
    assert lines == ["0 0.156250 0.312500 0.312500 0.312500", "1 0.812500 0.156250 0.375000 0.312500"]
    assert check_dataset(tmp_path / "out", strict=True).ok


# --- the CLI, offline -------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "write", "counts"), [
    ("potato-uav", write_labelme_release, "test 2, train 16, val 2 images, 40 boxes"),
    ("sugarbeet-jmpap", write_voc_release, "test 8, train 24, val 8 images, 80 boxes"),
])
def test_cli_imports_and_checks_from_a_local_folder_offline(tmp_path: Path, name: str,
                                                            write: Callable[[Path], Path],
                                                            counts: str) -> None:
    write(tmp_path / "snapshot")
    runner = CliRunner()
    with guarded(allow_loopback=False) as attempts:
        imported = runner.invoke(app, ["data", "import", name, "--from", str(tmp_path / "snapshot"),
                                       "--out", str(tmp_path / name)])
        checked = runner.invoke(app, ["data", "check", str(tmp_path / name), "--strict"])
    assert imported.exit_code == 0, imported.output
    assert f"native layout -> {tmp_path / name / 'data.yaml'} ({counts})" in imported.output
    assert checked.exit_code == 0 and "ok: no problems" in checked.output, checked.output
    assert attempts == []
