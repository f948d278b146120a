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


def should_tile(width: int, height: int, input_size: int, mode: str, factor: float,
                min_side: int = 0) -> bool:
    """`auto` tiles when the longer side is over `factor` x the model input and over `min_side`."""
    if mode == "on":
        return True
    if mode == "off":
        return False
    longer = max(width, height)
    return longer > factor * input_size and longer > min_side
