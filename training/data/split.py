"""Seeded train/val/test splits, including a group-aware one that keeps near-duplicate images
(flipped, turned or shifted copies of one photo) on the same side of the split, and a spatial
or temporal one (`block_split`) for tiles of one map or frames of one video."""

from __future__ import annotations

import random
import re
from pathlib import Path

import cv2
import numpy as np

from training.data.cards import BLOCK_ENDS
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


def block_split(stems: list[str], key: str, val: float, test: float,
                at: str = "end") -> dict[str, str]:
    """Contiguous blocks by position: stem -> split.

    `key` matches each stem with a group `pos` (an integer: tile column, frame number) and an
    optional `seq` (a video, a map). Within each seq the distinct positions are sorted; the
    last (`at="start"`: the first) round(test * n) go to test, the round(val * n) next to them
    to val, the rest to train (at least one each when the fraction is > 0 and there are 3
    positions or more). Every stem at one position (both halves of a frame, a tile column)
    lands in one split, and only one block edge touches train: train | val | test."""
    if at not in BLOCK_ENDS:
        raise DatasetError(f"block split at '{at}': expected one of {', '.join(BLOCK_ENDS)}")
    pattern = re.compile(key)
    positions: dict[str, dict[str, int]] = {}  # seq -> stem -> pos
    for stem in stems:
        match = pattern.fullmatch(stem)
        if match is None:
            raise DatasetError(f"image name '{stem}' does not match the split key {key!r}")
        if not (match.group("pos") or "").isdigit():
            raise DatasetError(f"image name '{stem}': the split key's pos "
                               f"'{match.group('pos')}' is not a number")
        seq = match.groupdict().get("seq") or ""
        positions.setdefault(seq, {})[stem] = int(match.group("pos"))
    assign: dict[str, str] = {}
    for by_stem in positions.values():
        order = sorted(set(by_stem.values()), reverse=at == "start")
        n_test, n_val = (_block_count(f, len(order)) for f in (test, val))
        first_val = max(0, len(order) - n_test - n_val)
        split_of = {pos: "train" if i < first_val else "val" if i < len(order) - n_test else "test"
                    for i, pos in enumerate(order)}
        assign.update({stem: split_of[pos] for stem, pos in by_stem.items()})
    return assign


def _block_count(fraction: float, positions: int) -> int:
    count = round(fraction * positions)
    return max(1, count) if fraction > 0 and positions >= 3 else count


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
