"""Names that become folder names: checked against one strict pattern, so none can escape."""

from __future__ import annotations

import re

from serving.fields.errors import InvalidName

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
IMAGE_ID_PATTERN = r"^[0-9a-f]{16}$"  # the first 16 hex digits of the photo's sha256
_IMAGE_ID = re.compile(IMAGE_ID_PATTERN)


def check_name(name: str) -> str:
    """`name` if it is a valid dataset name (lower-case letters, digits, `_`, `-`; 1-64), else 422."""
    if not _NAME.fullmatch(name):
        raise InvalidName(f"invalid dataset name {name[:80]!r}: use 1-64 lower-case letters, digits, "
                          "'_' or '-', starting with a letter or digit")
    return name


def is_image_id(value: str) -> bool:
    return bool(_IMAGE_ID.fullmatch(value))
