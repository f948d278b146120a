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


def find_images(inputs: Iterable[str | Path]) -> list[str]:
    """Absolute paths (sorted, unique) of the images the inputs name.

    A folder contributes every image under it, a glob every image it matches (`**` recurses),
    a file itself (whatever its type: a bad one becomes an error line, not a silent skip).
    Paths are absolute so that resuming from another folder, or a Ray worker, finds them.
    """
    inputs = list(inputs)
    found: set[str] = set()
    for item in inputs:
        text = str(item)
        if any(c in _GLOB_CHARS for c in text) and not Path(text).exists():
            matches = [Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True)]
            for match in matches:
                if match.is_dir():
                    found.update(os.path.abspath(p) for p in images_under(match))
                elif is_image_name(match):
                    found.add(os.path.abspath(match))
            continue
        path = Path(text).expanduser()
        if path.is_dir():
            found.update(os.path.abspath(p) for p in images_under(path))
        elif path.exists():  # a file, or something odd named as one: its error line tells
            found.add(os.path.abspath(path))
        else:
            raise InputError(f"no such file or folder: {text}")
    if not found:
        raise InputError(f"no images found in {', '.join(str(i) for i in inputs) or 'the inputs'} "
                         f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return sorted(found)
