"""A field dataset as a zip in the YOLO layout (NAME/data.yaml, card.yaml, images/, labels/),
written chunk by chunk as it is sent: no temporary file, one photo in memory at a time."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

from serving.fields.store import FieldStore


class _Chunks(io.RawIOBase):
    """A write-only stream that keeps what is written until it is taken."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def export_files(store: FieldStore, name: str) -> list[tuple[Path, str]]:
    """(file, name in the zip) for the dataset's metadata, photos and label files; checked now so
    that a missing dataset is a 404 before the answer starts."""
    store.get_dataset(name)
    folder = store.folder(name)
    files = [(folder / "data.yaml", f"{name}/data.yaml"), (folder / "card.yaml", f"{name}/card.yaml")]
    for image in store.list_images(name):
        label = f"labels/{image.split}/{image.id}.txt"
        files += [(folder / image.file, f"{name}/{image.file}"), (folder / label, f"{name}/{label}")]
    return files


def zip_chunks(files: list[tuple[Path, str]]) -> Iterator[bytes]:
    """The zip of `files`, in pieces; photos stored as they are, text deflated. A file gone since
    the listing (deleted meanwhile) is left out."""
    sink = _Chunks()
    with zipfile.ZipFile(sink, "w") as archive:
        for path, arcname in files:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            text = path.suffix in (".txt", ".yaml")
            archive.writestr(arcname, data, zipfile.ZIP_DEFLATED if text else zipfile.ZIP_STORED)
            yield sink.take()
    yield sink.take()
