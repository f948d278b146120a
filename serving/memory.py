"""Give freed heap memory back to the operating system (glibc keeps it otherwise)."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable


def _libc_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim if sys.platform == "linux" else None
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def return_memory() -> None:
    """glibc keeps the heap that a big image's decoding and tiling, or an unloaded model's
    session, grew; give what is free back to the OS."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
