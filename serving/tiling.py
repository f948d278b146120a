"""Cutting big images (drone photos) into overlapping tiles; kept apart from the model."""

from __future__ import annotations

import math


def tile_windows(width: int, height: int, tile: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """Overlapping windows (x0, y0, x1, y1) of side `tile` covering the whole image.

    Windows are spread evenly so that the last one ends exactly at the border.
    """
    def starts(length: int) -> list[int]:
        if length <= tile:
            return [0]
        stride = tile * (1.0 - overlap)
        count = math.ceil((length - tile) / stride) + 1
        step = (length - tile) / (count - 1)
        return [round(i * step) for i in range(count)]

    return [(x, y, min(x + tile, width), min(y + tile, height))
            for y in starts(height) for x in starts(width)]


def should_tile(width: int, height: int, input_size: int, mode: str, factor: float) -> bool:
    """`auto` tiles when the longer side is more than `factor` times the model input."""
    if mode == "on":
        return True
    if mode == "off":
        return False
    return max(width, height) > factor * input_size
