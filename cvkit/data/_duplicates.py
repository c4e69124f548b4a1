"""Duplicate images: the same picture twice in a small medical data set is leakage waiting to happen.

Exact duplicates share their bytes; near duplicates (the same image re-saved, re-scaled or
slightly re-exposed) share their 64-bit average hash up to ``max_distance`` differing bits: the
image is shrunk to 8x8 block means and each bit says whether a block is brighter than the mean.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

HASH_SIDE = 8
MAX_LISTED = 10  # conflicting duplicate sets named in a warning


@dataclass(frozen=True)
class DuplicatePair:
    first: int  # sample indices, first < second
    second: int
    exact: bool


def average_hashes(images: np.ndarray) -> np.ndarray:
    """One 64-bit average hash per image (uint8, NCHW), as a uint64 array."""
    grey = images.astype(np.float64).mean(axis=1)
    n, h, w = grey.shape
    rows = np.array_split(np.arange(h), HASH_SIDE)
    cols = np.array_split(np.arange(w), HASH_SIDE)
    blocks = np.stack(
        [np.stack([grey[:, r][:, :, c].mean(axis=(1, 2)) for c in cols], axis=1) for r in rows], axis=1
    )
    bits = (blocks > blocks.mean(axis=(1, 2), keepdims=True)).reshape(n, -1)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def find_duplicates(images: np.ndarray, *, max_distance: int = 0) -> list[DuplicatePair]:
    """Pairs of exactly equal images and, when ``max_distance`` > 0 or the hashes are equal, of
    near-identical ones (average hashes at most ``max_distance`` bits apart). Images smaller than
    8x8 are compared exactly only."""
    digests = {}
    pairs = []
    exact = set()
    for i, image in enumerate(images):
        key = hashlib.sha1(image.tobytes()).digest()
        for j in digests.get(key, []):
            pairs.append(DuplicatePair(j, i, True))
            exact.add((j, i))
        digests.setdefault(key, []).append(i)
    if min(images.shape[2:]) < HASH_SIDE or len(images) < 2:
        return pairs
    codes = average_hashes(images)
    for start in range(0, len(codes), 1024):  # chunks keep the distance matrix small
        distance = np.bitwise_count(codes[start : start + 1024, None] ^ codes[None, :])
        for a, j in zip(*np.nonzero(distance <= max_distance)):
            i = start + a
            if i < j and (i, j) not in exact and _similar(images[i], images[j]):
                pairs.append(DuplicatePair(int(i), int(j), False))
    return sorted(pairs, key=lambda p: (p.first, p.second))


def _similar(a: np.ndarray, b: np.ndarray) -> bool:
    """A hash match confirmed on the pixels: correlation above 0.95 (flat images hash alike)."""
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    if a.std() == 0 or b.std() == 0:
        return bool(np.abs(a - b).max() <= 2)
    return bool(np.corrcoef(a, b)[0, 1] > 0.95)


def drop_duplicates(dataset, pairs: list[DuplicatePair]):
    """``(dataset without duplicates, warning lines)``: of each set of duplicate images (pairs
    joined transitively) the first is kept when all carry one label; a set whose copies carry
    different labels is dropped whole, since which label is right cannot be known, and the
    warning names its files and labels."""
    parent = list(range(len(dataset)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for pair in pairs:
        parent[root(pair.second)] = root(pair.first)
    sets: dict[int, list[int]] = {}
    for i in sorted({i for pair in pairs for i in (pair.first, pair.second)}):
        sets.setdefault(root(i), []).append(i)
    dropped, conflicts, same = set(), [], 0
    for members in sets.values():
        if len({int(dataset.labels[i]) for i in members}) > 1:
            dropped.update(members)
            conflicts.append(
                " = ".join(
                    f"{dataset.sample_ids[i]} ({dataset.class_names[dataset.labels[i]]})" for i in members
                )
            )
        else:
            dropped.update(members[1:])
            same += len(members) - 1
    kept = dataset.subset([i for i in range(len(dataset)) if i not in dropped])
    lines = []
    if same:
        lines.append(f"--dedupe: dropped {same} duplicate image(s) of the same label, kept one of each")
    if conflicts:
        shown = "; ".join(conflicts[:MAX_LISTED])
        more = f"; and {len(conflicts) - MAX_LISTED} more" if len(conflicts) > MAX_LISTED else ""
        lines.append(
            f"--dedupe: {len(conflicts)} set(s) of identical images carry different labels; every copy "
            f"was dropped (which label is right is unknown; fix the labels to keep them): {shown}{more}"
        )
    return kept, lines
