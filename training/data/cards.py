"""Dataset cards: one YAML per public dataset in `datasets/` (where to get it, checksum, licence,
citation, native format, class mapping), loaded into a typed, validated `DatasetCard`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from training.data.yolo import yaml_problem
from training.trainset import CANONICAL_CLASSES, DatasetError

CARDS_ENV = "WEEDSCAN_DATASET_CARDS"
NATIVE_FORMATS = ("cwfid-polygon-yaml", "yolo-txt", "labelme-json", "voc-xml")
SPLIT_METHODS = ("file", "groups", "seeded", "blocks")
BLOCK_ENDS = ("start", "end")  # split.at of method "blocks"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Download:
    url: str
    sha256: str | None  # None: unknown, fetch cannot verify
    source: str         # what the url points at (original release or a named mirror)


@dataclass(frozen=True)
class Licence:
    name: str
    commercial_use: bool | None  # None: not verified
    text: str


@dataclass(frozen=True)
class Split:
    method: str        # file | groups | seeded | blocks
    file: str | None   # the dataset's own split file (method "file")
    seed: int
    val: float
    test: float
    key: str | None = None  # method "blocks": regex on the image stem, groups `pos` (and `seq`)
    at: str = "end"         # method "blocks": held-out blocks at the start or end of each seq


@dataclass(frozen=True)
class DatasetCard:
    name: str
    title: str
    homepage: str
    download: Download
    licence: Licence
    citation: str
    native_format: str
    native_names: list[str]
    classes: dict[str, str | None]  # native class -> canonical class, None drops it
    image_count: int
    image_size: tuple[int, int]     # width, height
    split: Split
    path: Path

    def canonical_id(self, native_name: str) -> int | None:
        """Canonical class id of a native class name; None when the card drops that class."""
        if native_name not in self.classes:
            raise DatasetError(f"dataset {self.name}: class '{native_name}' is not in the class "
                               f"mapping of its card ({self.path})")
        target = self.classes[native_name]
        return None if target is None else CANONICAL_CLASSES.index(target)


def cards_dir() -> Path:
    """`$WEEDSCAN_DATASET_CARDS`, else `datasets/` next to the `training` package."""
    override = os.environ.get(CARDS_ENV)
    folder = Path(override) if override else Path(__file__).resolve().parents[2] / "datasets"
    if not folder.is_dir():
        raise DatasetError(f"dataset cards folder not found: {folder} (set {CARDS_ENV})")
    return folder


def list_cards() -> list[DatasetCard]:
    return [load_card_file(p) for p in sorted(cards_dir().glob("*.yaml"))]


def load_card(name: str) -> DatasetCard:
    folder = cards_dir()
    path = folder / f"{name}.yaml"
    if not _NAME.match(name) or not path.is_file():
        known = ", ".join(p.stem for p in sorted(folder.glob("*.yaml"))) or "none"
        raise DatasetError(f"unknown dataset '{name}' (known: {known})")
    return load_card_file(path)


def load_card_file(path: Path) -> DatasetCard:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DatasetError(f"dataset card {path} is not valid YAML: {yaml_problem(exc)}") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read dataset card {path}: {exc.strerror}") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"dataset card {path} must be a mapping of fields")
    return _parse(data, path)


def _parse(data: dict[str, Any], path: Path) -> DatasetCard:
    def need(mapping: Any, key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
        if not isinstance(mapping, dict) or key not in mapping:
            raise DatasetError(f"dataset card {path}: missing field '{where}{key}'")
        value = mapping[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise DatasetError(f"dataset card {path}: field '{where}{key}' has the wrong type "
                               f"({type(value).__name__})")
        return value

    name = need(data, "name", str)
    if name != path.stem or not _NAME.match(name):
        raise DatasetError(f"dataset card {path}: name '{name}' must match the file name "
                           "and use only a-z, 0-9, '-' and '_'")
    download = need(data, "download", dict)
    sha = need(download, "sha256", (str, type(None)), "download.")
    if sha is not None and not _SHA256.match(sha.lower()):
        raise DatasetError(f"dataset card {path}: download.sha256 must be 64 hex digits or null")
    licence = need(data, "licence", dict)
    fmt = need(data, "format", dict)
    native = need(fmt, "native", str, "format.")
    if native not in NATIVE_FORMATS:
        raise DatasetError(f"dataset card {path}: format.native '{native}' is not one of "
                           f"{', '.join(NATIVE_FORMATS)}")
    classes = need(data, "classes", dict)
    for native_name, target in classes.items():
        if target is not None and target not in CANONICAL_CLASSES:
            raise DatasetError(f"dataset card {path}: class '{native_name}' maps to '{target}', "
                               f"not one of {', '.join(CANONICAL_CLASSES)} (or null)")
    native_names = [str(n) for n in need(fmt, "native_names", list, "format.")]
    images = need(data, "images", dict)
    split = need(data, "split", dict)
    method = need(split, "method", str, "split.")
    if method not in SPLIT_METHODS:
        raise DatasetError(f"dataset card {path}: split.method '{method}' is not one of "
                           f"{', '.join(SPLIT_METHODS)}")
    key = need(split, "key", str, "split.") if method == "blocks" else None
    if key is not None:
        _check_block_key(key, path)
    at = str(split.get("at", "end"))
    if at not in BLOCK_ENDS:
        raise DatasetError(f"dataset card {path}: split.at '{at}' is not one of "
                           f"{', '.join(BLOCK_ENDS)}")
    return DatasetCard(
        name=name, title=need(data, "title", str), homepage=need(data, "homepage", str),
        download=Download(url=need(download, "url", str, "download."),
                          sha256=sha.lower() if sha else None,
                          source=str(download.get("source", ""))),
        licence=Licence(name=need(licence, "name", str, "licence."),
                        commercial_use=need(licence, "commercial_use", (bool, type(None)),
                                            "licence."),
                        text=str(licence.get("text", ""))),
        citation=need(data, "citation", str).strip(), native_format=native,
        native_names=native_names, classes={str(k): v for k, v in classes.items()},
        image_count=need(images, "count", int, "images."),
        image_size=(need(images, "width", int, "images."), need(images, "height", int, "images.")),
        split=Split(method=method, file=need(split, "file", (str, type(None)), "split."),
                    seed=need(split, "seed", int, "split."),
                    val=float(need(split, "val", (int, float), "split.")),
                    test=float(need(split, "test", (int, float), "split.")), key=key,
                    at=at),
        path=path,
    )


def _check_block_key(key: str, path: Path) -> None:
    """split.key must compile and name a `pos` group (a tile column, a frame number)."""
    try:
        pattern = re.compile(key)
    except re.error as exc:
        raise DatasetError(f"dataset card {path}: split.key is not a valid regex: {exc}") from None
    if "pos" not in pattern.groupindex:
        raise DatasetError(f"dataset card {path}: split.key must have a (?P<pos>...) group")
