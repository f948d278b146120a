"""Seeded train/val/test splits, including a group-aware one that keeps near-duplicate images
(flipped, turned or shifted copies of one photo) on the same side of the split."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np

from training.trainset import DatasetError

HASH_SIDE = 16  # dHash of 16 x 16 = 256 bits


def group_split(groups: list[list[str]], seed: int, val: float, test: float) -> dict[str, str]:
    """Shuffle the groups with `seed` and fill test, then val, then train; returns key -> split.

    val and test get at least one group each when there are three groups or more."""
    total = sum(len(g) for g in groups)
    want: dict[str, int] = {}
    for split, fraction in (("test", test), ("val", val)):
        count = round(fraction * total)
        want[split] = max(1, count) if fraction > 0 and len(groups) >= 3 else count
    order = list(groups)
    random.Random(seed).shuffle(order)
    filled = {"test": 0, "val": 0}
    assign: dict[str, str] = {}
    for group in order:
        split = next((s for s in ("test", "val") if filled[s] < want[s]), "train")
        if split != "train":
            filled[split] += len(group)
        assign.update({key: split for key in group})
    return assign


def seeded_split(keys: list[str], seed: int, val: float, test: float) -> dict[str, str]:
    return group_split([[k] for k in sorted(keys)], seed, val, test)


def dhash_variants(image_path: Path) -> np.ndarray:
    """(8, 256) bool: the dHash of the image under each of the 8 flips/rotations."""
    gray = cv2.imread(str(image_path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise DatasetError(f"cannot decode image {image_path}")
    small = cv2.resize(gray, (64, 64), interpolation=cv2.INTER_AREA)
    variants = []
    for flipped in (small, small[:, ::-1]):
        for k in range(4):
            img = cv2.resize(np.ascontiguousarray(np.rot90(flipped, k)), (HASH_SIDE + 1, HASH_SIDE),
                             interpolation=cv2.INTER_AREA).astype(np.int16)
            variants.append((img[:, 1:] > img[:, :-1]).ravel())
    return np.stack(variants)


def near_duplicate_groups(images: list[Path], threshold: int = 64) -> list[list[Path]]:
    """Union-find over pairs whose dHash distance (min over the 8 flips/rotations) <= threshold."""
    n = len(images)
    if n == 0:
        return []
    hashes = np.stack([dhash_variants(p) for p in images]).astype(np.float32) * 2 - 1  # +-1 bits
    bits = hashes.shape[-1]
    ident = hashes[:, 0]                               # (n, bits)
    variants = hashes.reshape(n * 8, bits)             # (8n, bits)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, n, 256):  # rows in chunks: memory stays ~ 256 x 8n floats
        dots = (ident[start:start + 256] @ variants.T).reshape(-1, n, 8).max(axis=2)
        dist = (bits - dots) / 2                       # Hamming distance from the +-1 dot product
        for i, j in zip(*np.nonzero(dist <= threshold)):
            a, b = find(start + int(i)), find(int(j))
            if a != b:
                parent[a] = b
    groups: dict[int, list[Path]] = {}
    for i, path in enumerate(images):
        groups.setdefault(find(i), []).append(path)
    return list(groups.values())
