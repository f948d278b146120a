"""The field store: the operations on field datasets that the routes and the CLI call.

Every write holds the catalogue's write transaction while it touches the files, so writers (threads,
server workers, the CLI) take turns and a failed write leaves neither a row nor a file behind.
Saving a photo that the dataset already holds (same sha256) replaces its labels (and its split):
the review loop saves a corrected photo again, and that must not make a second copy.
Problems with the folder itself are client-shaped errors: 503 with the path when it cannot be
made, read or written, 507 when the quota or the disk is full; never a 500.
"""

from __future__ import annotations

import errno
import hashlib
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from serving.errors import InvalidParameter
from serving.fields.catalogue import Catalogue, DatasetRecord, DatasetTotals, ImageRecord, Split, now
from serving.fields.errors import DataDirUnavailable, DatasetExists, DatasetNotFound, ImageNotFound, QuotaExceeded
from serving.fields.files import atomic_write, remove_quietly
from serving.fields.labels import CLASSES, LabelBox, class_counts, fit_to_image, from_yolo, to_yolo
from serving.fields.names import check_name, is_image_id
from serving.imaging import decode_image, read_header

CATALOGUE_FILE = "catalogue.sqlite"
DEFAULT_LICENCE = "private"
_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp",
               "image/bmp": ".bmp", "image/tiff": ".tif"}
MEDIA_TYPES = {ext: media for media, ext in _EXTENSIONS.items()}
DISK_RESERVE_BYTES = 64 * 1024 * 1024  # a save never fills the disk to the last bytes
_FULL = (errno.ENOSPC, errno.EDQUOT)


class DatasetInfo(BaseModel):
    name: str
    crop: str = Field(description="the crop of the field, free text (e.g. carrot)")
    licence: str
    created: datetime
    updated: datetime
    images: int
    counts: dict[str, int] = Field(description="boxes per class, every class")
    splits: dict[str, int] = Field(description="photos per split")
    bytes: int


class FieldCard(BaseModel):
    """NAME/card.yaml: what the dataset is, for people and for the model cards it feeds."""

    name: str
    crop: str
    created: datetime
    updated: datetime
    licence: str
    classes: list[str] = Field(default_factory=lambda: list(CLASSES))
    images: int
    counts: dict[str, int]
    splits: dict[str, int]
    format: str = "yolo"
    written_by: str = "weedscan"


class LabelledImage(BaseModel):
    image: ImageRecord
    labels: list[LabelBox]


class SavedImage(LabelledImage):
    created: bool = Field(description="true: a new photo; false: it was there, its labels replaced")


def _info(record: DatasetRecord, totals: DatasetTotals) -> DatasetInfo:
    return DatasetInfo(**record.model_dump(), images=totals.images, counts=totals.counts,
                       splits=totals.splits, bytes=totals.bytes)


class FieldStore:
    """Field datasets under `data_dir`. Nothing is made on disk until the first write."""

    def __init__(self, data_dir: Path, max_bytes: int, max_pixels: int) -> None:
        self.data_dir = data_dir.expanduser().absolute()
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.catalogue = Catalogue(self.data_dir / CATALOGUE_FILE)

    # --- guards --------------------------------------------------------------------------------

    @contextmanager
    def guard(self) -> Iterator[None]:
        """OS and SQLite failures of the data folder as 503 / 507 naming the folder (`with
        store.guard(): store.catalogue.create_job(...)` for callers of the catalogue)."""
        try:
            yield
        except OSError as exc:
            if exc.errno in _FULL:
                raise QuotaExceeded(f"the disk holding {self.data_dir} is full") from exc
            raise DataDirUnavailable(f"the data folder {self.data_dir} cannot be used "
                                     f"({exc.strerror or exc}); set WEEDSCAN_DATA_DIR to a "
                                     "writable folder") from exc
        except sqlite3.Error as exc:
            if "full" in str(exc):
                raise QuotaExceeded(f"the disk holding {self.data_dir} is full") from exc
            raise DataDirUnavailable(f"the catalogue {self.catalogue.path} cannot be used ({exc}); "
                                     "set WEEDSCAN_DATA_DIR to a writable folder") from exc

    def _exists(self) -> bool:
        return self.catalogue.path.is_file()

    def _writable(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def folder(self, name: str) -> Path:
        return self.data_dir / check_name(name)

    def _record(self, name: str) -> DatasetRecord:
        check_name(name)
        record = self.catalogue.get_dataset(name) if self._exists() else None
        if record is None:
            raise DatasetNotFound(f"no field dataset {name!r}")
        return record

    # --- datasets ------------------------------------------------------------------------------

    def list_datasets(self) -> list[DatasetInfo]:
        with self.guard():
            if not self._exists():
                return []
            return [_info(r, self.catalogue.totals(r.name)) for r in self.catalogue.list_datasets()]

    def get_dataset(self, name: str) -> DatasetInfo:
        with self.guard():
            record = self._record(name)
            return _info(record, self.catalogue.totals(name))

    def create_dataset(self, name: str, crop: str, licence: str = DEFAULT_LICENCE) -> DatasetInfo:
        check_name(name)
        crop, licence = check_text(crop, "crop"), check_text(licence, "licence")
        with self.guard():
            self._writable()
            folder = self.folder(name)
            stamp = now()
            record = DatasetRecord(name=name, crop=crop, licence=licence, created=stamp,
                                   updated=stamp)
            with self.catalogue.transaction() as conn:
                if conn.execute("SELECT 1 FROM datasets WHERE name = ?", (name,)).fetchone():
                    raise DatasetExists(f"field dataset {name!r} exists already")
                if folder.exists() and any(folder.iterdir()):
                    raise DatasetExists(f"{folder} exists and is not a catalogued dataset; "
                                        "move it away or choose another name")
                conn.execute("INSERT INTO datasets VALUES (?, ?, ?, ?, ?)",
                             (name, crop, licence, stamp.isoformat(), stamp.isoformat()))
                try:
                    for kind in ("images", "labels"):
                        (folder / kind / "train").mkdir(parents=True, exist_ok=True)
                    self._write_meta(record, DatasetTotals())
                except BaseException:
                    shutil.rmtree(folder, ignore_errors=True)
                    raise
            return _info(record, DatasetTotals())

    def delete_dataset(self, name: str) -> None:
        with self.guard():
            self._record(name)
            folder = self.folder(name)
            with self.catalogue.transaction() as conn:
                conn.execute("DELETE FROM datasets WHERE name = ?", (name,))
                if folder.exists():  # renamed first: a half-deleted folder is never a dataset
                    trash = self.data_dir / f".{name}.deleted-{time.time_ns()}"
                    folder.rename(trash)
                    shutil.rmtree(trash, ignore_errors=True)

    def _write_meta(self, record: DatasetRecord, totals: DatasetTotals) -> None:
        """data.yaml (the splits that hold photos; train always) and card.yaml."""
        folder = self.folder(record.name)
        splits = [s for s in ("train", "val", "test") if s == "train" or totals.splits.get(s)]
        body: dict[str, object] = {s: f"images/{s}" for s in splits}
        body.update(nc=len(CLASSES), names=list(CLASSES))
        atomic_write(folder / "data.yaml",
                     f"# Field dataset {record.name}, written by weedscan. Paths are relative to "
                     "this file's folder.\n" + yaml.safe_dump(body, sort_keys=False))
        card = FieldCard(name=record.name, crop=record.crop, created=record.created,
                         updated=record.updated, licence=record.licence, images=totals.images,
                         counts=totals.counts, splits=totals.splits)
        atomic_write(folder / "card.yaml", yaml.safe_dump(card.model_dump(mode="json"),
                                                          sort_keys=False, allow_unicode=True))

    def _refresh_meta(self, conn: sqlite3.Connection, name: str) -> None:
        """The card and data.yaml as the catalogue has them now (inside the write transaction)."""
        row = conn.execute("SELECT * FROM datasets WHERE name = ?", (name,)).fetchone()
        self._write_meta(DatasetRecord(**dict(row)), self.catalogue.totals(name, conn))

    # --- images --------------------------------------------------------------------------------

    def _image_record(self, name: str, image_id: str) -> ImageRecord:
        self._record(name)
        record = self.catalogue.get_image(name, image_id) if is_image_id(image_id) else None
        if record is None:
            raise ImageNotFound(f"field dataset {name!r} has no image {image_id[:40]!r}")
        return record

    def list_images(self, name: str) -> list[ImageRecord]:
        with self.guard():
            self._record(name)
            return self.catalogue.list_images(name)

    def get_image(self, name: str, image_id: str) -> LabelledImage:
        with self.guard():
            record = self._image_record(name, image_id)
            label_path = self._label_path(record)
            text = label_path.read_text(encoding="utf-8") if label_path.is_file() else ""
            return LabelledImage(image=record, labels=from_yolo(text, record.width, record.height))

    def image_file(self, name: str, image_id: str) -> tuple[Path, str]:
        """The stored photo and its media type."""
        with self.guard():
            record = self._image_record(name, image_id)
            path = self.folder(name) / record.file
            if not path.is_file():
                raise ImageNotFound(f"the photo of image {image_id} is missing from {path.parent}")
            return path, MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")

    def _label_path(self, record: ImageRecord) -> Path:
        return self.folder(record.dataset) / "labels" / record.split / f"{record.id}.txt"

    def add_image(self, name: str, data: bytes, labels: list[LabelBox], filename: str | None = None,
                  split: Split = "train") -> SavedImage:
        """Store a photo with its boxes (upright image pixels). The same photo again (same bytes):
        its labels and split are replaced, nothing is duplicated."""
        header = read_header(data)
        image = decode_image(data, self.max_pixels)  # a broken photo is refused before any write
        height, width = image.shape[:2]
        fitted = fit_to_image(labels, width, height)
        sha = hashlib.sha256(data).hexdigest()
        image_id = sha[:16]
        ext = _EXTENSIONS[header.media_type]
        with self.guard():
            self._record(name)
            folder = self.folder(name)
            with self.catalogue.transaction() as conn:
                old = self.catalogue.get_image(name, image_id, conn)
                if old is not None and old.sha256 != sha:
                    raise DatasetExists(f"image id {image_id} is taken by another photo")
                if old is None:
                    self._check_room(conn, len(data))
                stamp = now()
                record = ImageRecord(
                    dataset=name, id=image_id, sha256=sha, filename=_display_name(filename),
                    file=f"images/{split}/{image_id}{ext}", split=split, width=width, height=height,
                    bytes=len(data), counts=class_counts(fitted),
                    created=old.created if old else stamp, updated=stamp)
                target, label = folder / record.file, self._label_path(record)
                written: list[Path] = []
                try:
                    if old is not None and old.split != split:  # moved to another split
                        self._label_path(old).unlink(missing_ok=True)
                        if (folder / old.file).is_file():
                            (folder / old.file).replace(_made(target))
                    if not target.is_file():
                        atomic_write(target, data)
                        written.append(target)
                    atomic_write(label, to_yolo(fitted, width, height))
                    written.append(label)
                    self.catalogue.put_image(conn, record)
                    self._refresh_meta(conn, name)
                except BaseException:
                    if old is None:
                        for path in written:
                            remove_quietly(path)
                    raise
        return SavedImage(image=record, labels=fitted, created=old is None)

    def _check_room(self, conn: sqlite3.Connection, size: int) -> None:
        used = self.catalogue.used_bytes(conn)
        if used + size > self.max_bytes:
            raise QuotaExceeded(f"saving this photo ({size} bytes) would pass the field data quota: "
                                f"{used} of {self.max_bytes} bytes are used in {self.data_dir} "
                                "(WEEDSCAN_MAX_DATA_GB)")
        free = shutil.disk_usage(self.data_dir).free
        if free - size < DISK_RESERVE_BYTES:
            raise QuotaExceeded(f"the disk holding {self.data_dir} is full ({free} bytes free)")

    def replace_labels(self, name: str, image_id: str, labels: list[LabelBox]) -> LabelledImage:
        with self.guard():
            record = self._image_record(name, image_id)
            fitted = fit_to_image(labels, record.width, record.height)
            with self.catalogue.transaction() as conn:
                current = self.catalogue.get_image(name, image_id, conn)
                if current is None:
                    raise ImageNotFound(f"field dataset {name!r} has no image {image_id}")
                record = current.model_copy(update={"counts": class_counts(fitted),
                                                    "updated": now()})
                atomic_write(self._label_path(record), to_yolo(fitted, record.width, record.height))
                self.catalogue.put_image(conn, record)
                self._refresh_meta(conn, name)
            return LabelledImage(image=record, labels=fitted)

    def delete_image(self, name: str, image_id: str) -> None:
        with self.guard():
            record = self._image_record(name, image_id)
            with self.catalogue.transaction() as conn:
                self.catalogue.delete_image(conn, name, image_id)
                self._refresh_meta(conn, name)
                remove_quietly(self.folder(name) / record.file)
                remove_quietly(self._label_path(record))


def _made(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _display_name(filename: str | None) -> str | None:
    """The sent file name, for display only: its last path part, printable, at most 200 chars."""
    if not filename:
        return None
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    clean = "".join(c for c in base if c.isprintable())[:200]
    return clean or None


def check_text(value: str, what: str) -> str:
    """Free text of the card (crop, licence): printable, 1-64 characters."""
    value = value.strip()
    if not 1 <= len(value) <= 64 or not value.isprintable():
        raise InvalidParameter(f"{what}: give 1-64 printable characters")
    return value
