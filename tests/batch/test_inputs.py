"""Which files a batch covers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from serving.batch.inputs import InputError, find_images
from tests.batch.conftest import make_survey


def test_folders_are_walked_recursively_and_non_images_skipped(tmp_path: Path) -> None:
    survey = make_survey(tmp_path / "s", real=False)
    assert find_images([survey.root]) == [str(p) for p in survey.images]


def test_globs_files_and_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    survey = make_survey(tmp_path / "s", real=False)
    monkeypatch.chdir(survey.root)
    found = find_images(["flight1/*.jpg", "flight2/**/*.jpg", "flight2/north_west.JPG",
                         "flight1/north_east.jpg"])
    expected = sorted(str(p) for p in survey.images if p.suffix.lower() == ".jpg")
    assert found == expected
    assert all(os.path.isabs(p) for p in found)


def test_a_named_file_is_taken_whatever_its_type(tmp_path: Path) -> None:
    note = tmp_path / "notes.txt"
    note.write_text("x", encoding="utf-8")
    assert find_images([note]) == [str(note)]


def test_missing_path_and_nothing_found_are_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        find_images([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images found"):
        find_images([tmp_path / "empty", str(tmp_path / "*.jpg")])
