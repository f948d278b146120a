"""A bool mask as run lengths, the way `?vegetation_mask=true` sends it.

Row-major (pixel (x, y) is run position y * width + x); the runs alternate 0 and 1 and the first
is a run of 0s (of length 0 when the first pixel is set). This is COCO's uncompressed RLE, except
that COCO walks the mask column by column. A coarse plant mask of a field photo takes a few
thousand numbers, and a browser decodes it with one loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def encode_runs(mask: np.ndarray) -> list[int]:
    """The run lengths of a 2-D bool mask, row-major, starting with a run of 0s."""
    flat = np.ascontiguousarray(mask, dtype=bool).ravel()
    if flat.size == 0:
        return []
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], edges, [flat.size])))
    if flat[0]:
        runs = np.concatenate(([0], runs))
    return [int(n) for n in runs]


def decode_runs(counts: Sequence[int], width: int, height: int) -> np.ndarray:
    """The (height, width) bool mask of `encode_runs`' run lengths; ValueError when they do not
    add up to width x height or one is negative."""
    runs = np.asarray(counts, np.int64).reshape(-1)
    if (runs < 0).any() or int(runs.sum()) != width * height:
        raise ValueError(f"the runs add up to {int(runs.sum())} pixels (a negative one: "
                         f"{bool((runs < 0).any())}), the mask has {width}x{height}")
    values = np.arange(len(runs)) % 2 == 1
    return np.repeat(values, runs).reshape(height, width)
