"""Which files a batch covers: folders (walked recursively), globs and single files."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from serving.imaging import IMAGE_SUFFIXES

_GLOB_CHARS = frozenset("*?[")


class InputError(ValueError):
    """The inputs name nothing to process."""


def is_image_name(path: Path) -> bool:
    # Skip hidden files such as macOS "._IMG_0001.JPG" resource forks.
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def images_under(folder: Path) -> Iterable[Path]:
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        yield from (Path(root) / f for f in files if is_image_name(Path(f)))


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """The files the inputs name, in the order given, each once (`weedscan detect` and `batch`).

    A folder gives every image under it (sorted), a glob every image it matches (`**` recurses;
    a folder it matches is walked), a file itself whatever its type (a bad one becomes an error
    line, not a silent skip). InputError for a path that does not exist, or a folder or glob with
    no image in it. Paths stay as given (relative ones too).
    """
    found: dict[str, Path] = {}  # by absolute path: an image named twice is done once
    for item in inputs:
        text = str(item)
        if any(c in _GLOB_CHARS for c in text) and not Path(text).exists():
            images: list[Path] = []
            for match in sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True)):
                if match.is_dir():
                    images += sorted(images_under(match))
                elif is_image_name(match):
                    images.append(match)
        else:
            path = Path(text).expanduser()
            if path.is_dir():
                images = sorted(images_under(path))
            elif path.exists():  # a file, or something odd named as one: its error line tells
                images = [path]
            else:
                raise InputError(f"no such file or folder: {text}")
        if not images:
            raise InputError(f"no images found in {text} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        for image in images:
            found.setdefault(os.path.abspath(image), image)
    return list(found.values())


def find_images(inputs: Iterable[str | Path]) -> list[str]:
    """Absolute paths (sorted) of the images the inputs name (see expand_inputs): absolute, so
    that resuming from another folder, or a Ray worker, finds them."""
    return sorted(os.path.abspath(p) for p in expand_inputs(inputs))
