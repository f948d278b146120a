"""Dataset cards: the shipped ones are complete, bad ones fail with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from training.data.cards import CARDS_ENV, cards_dir, list_cards, load_card
from training.trainset import DatasetError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _shipped_cards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CARDS_ENV, raising=False)


def test_shipped_cards_are_found_and_complete() -> None:
    assert cards_dir() == REPO / "datasets"
    cards = {c.name: c for c in list_cards()}
    assert set(cards) >= {"cwfid", "sesame"}
    for card in cards.values():
        assert card.homepage.startswith("https://")
        assert card.download.url.startswith("https://")
        assert card.citation.startswith("@")
        assert set(card.classes.values()) <= {"crop", "weed", None}
        assert card.image_count > 0 and min(card.image_size) > 0
    assert not (REPO / "datasets" / "__init__.py").exists()  # data cards, not a Python package


def test_cwfid_card() -> None:
    card = load_card("cwfid")
    assert card.licence.commercial_use is False
    assert "non-commercial" in card.licence.name
    assert card.native_format == "cwfid-polygon-yaml"
    assert card.image_size == (1296, 966) and card.image_count == 60
    assert card.split.method == "file" and card.split.file == "train_test_split.yaml"
    assert "github.com/cwfid/dataset" in card.download.url
    assert card.canonical_id("crop") == 0 and card.canonical_id("weed") == 1


def test_sesame_card_names_the_mirror_fetch_uses() -> None:
    card = load_card("sesame")
    assert "kaggle.com" in card.homepage
    assert "humanbright/WeedDetector" in card.download.url
    assert "mirror" in card.download.source
    assert card.native_format == "yolo-txt" and card.native_names == ["crop", "weed"]
    assert card.split.method == "groups"
    assert card.download.sha256 is None  # unknown: fetch must then ask for --no-verify


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(DatasetError, match=r"unknown dataset 'nope' \(known: .*cwfid.*sesame"):
        load_card("nope")
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_card("../datasets/cwfid")


def test_unknown_class_in_data_is_an_error() -> None:
    with pytest.raises(DatasetError, match="'grass' is not in the class mapping"):
        load_card("cwfid").canonical_id("grass")


def _card_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **changes: object) -> Path:
    data = yaml.safe_load((REPO / "datasets" / "cwfid.yaml").read_text(encoding="utf-8"))
    data.update(changes)
    folder = tmp_path / "cards"
    folder.mkdir()
    (folder / "cwfid.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    monkeypatch.setenv(CARDS_ENV, str(folder))
    return folder


def test_env_overrides_the_cards_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _card_dir(tmp_path, monkeypatch, title="Test copy")
    assert cards_dir() == folder
    assert [c.name for c in list_cards()] == ["cwfid"]
    assert load_card("cwfid").title == "Test copy"


def test_missing_cards_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CARDS_ENV, str(tmp_path / "none"))
    with pytest.raises(DatasetError, match="dataset cards folder not found"):
        list_cards()


def test_malformed_yaml_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _card_dir(tmp_path, monkeypatch)
    (folder / "cwfid.yaml").write_text("name: cwfid\ntitle: [unclosed\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"cwfid.yaml is not valid YAML"):
        load_card("cwfid")


@pytest.mark.parametrize(("changes", "message"), [
    ({"title": None}, "field 'title' has the wrong type"),
    ({"name": "other"}, "must match the file name"),
    ({"download": {"url": "https://x", "sha256": "abc"}}, "64 hex digits"),
    ({"classes": {"crop": "maize"}}, "maps to 'maize'"),
    ({"format": {"native": "coco", "native_names": []}}, "format.native 'coco'"),
    ({"licence": {"name": "x", "commercial_use": "maybe"}}, "licence.commercial_use"),
    ({"images": {"count": 60}}, "missing field 'images.width'"),
])
def test_invalid_card_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             changes: dict[str, object], message: str) -> None:
    _card_dir(tmp_path, monkeypatch, **changes)
    with pytest.raises(DatasetError, match=message):
        load_card("cwfid")


def test_card_sha256_is_normalised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _card_dir(tmp_path, monkeypatch,
              download={"url": "https://x", "sha256": "AB" * 32, "source": "test"})
    assert load_card("cwfid").download.sha256 == "ab" * 32
