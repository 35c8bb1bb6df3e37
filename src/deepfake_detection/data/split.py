"""Splitting images into train/valid/test: how many go where, and which ones.

One counting rule for the whole project (:func:`split_sizes`: valid and test rounded half up,
at least one image left to train) and one assignment (:func:`assign_splits`: stratified by label,
seeded, groups kept whole). ``ingest`` splits a flat ``{real,fake}`` folder with both, grouping
byte-identical files (same md5) so that a duplicate never straddles two splits; the sample
generator uses :func:`split_sizes` for its per-class counts (its images are drawn independently,
so it needs no shuffle).

Why not scikit-learn's splitters: ``train_test_split`` / ``StratifiedShuffleSplit`` ignore
groups and refuse a class with a single image (ingest keeps it in train and warns), and
``StratifiedGroupKFold`` only makes folds of 1/k, not the configured fractions. The assignment
below is a seeded per-class shuffle with exact counts, which is what those do, plus groups.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np

from deepfake_detection import LABELS


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def split_sizes(n: int, valid_fraction: float, test_fraction: float) -> dict[str, int]:
    """How many of ``n`` images go to each split: ``valid`` and ``test`` are ``n * fraction``
    rounded half up, ``train`` the rest; while that leaves nothing to train on (and ``n > 0``),
    the larger of valid/test (valid on a tie) gives one back."""
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not (0 <= valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ValueError(
            f"valid_fraction and test_fraction must be in [0, 1) and sum below 1; got {valid_fraction}, {test_fraction}"
        )
    valid, test = _round_half_up(n * valid_fraction), _round_half_up(n * test_fraction)
    while n and valid + test >= n:
        if valid >= test and valid:
            valid -= 1
        else:
            test -= 1
    return {"train": n - valid - test, "valid": valid, "test": test}


def assign_splits(
    labels: Sequence[str],
    groups: Sequence[Hashable],
    valid_fraction: float,
    test_fraction: float,
    seed: int,
) -> list[str]:
    """The split (``train``/``valid``/``test``) of each item, stratified by label and seeded;
    items with the same ``groups`` entry (e.g. the same content hash) always share a split.

    Per label (``LABELS`` order, label ``k`` shuffled by ``np.random.default_rng([seed, k])``),
    the label's groups are taken in a seeded random order and each goes to ``test`` if it still
    fits in test's quota (:func:`split_sizes` of the label's item count), else to ``valid`` if it
    fits there, else to ``train``; so no holdout split gets more than its quota and train is never
    empty. A group is counted and placed under the label of its first item. With every item its
    own group this is a plain seeded per-class shuffle: the first ``test`` items of the shuffled
    order go to test, the next ``valid`` to valid. The result depends on the items' order (give
    them in a fixed one, e.g. sorted by path), the fractions and ``seed`` only.
    """
    if len(labels) != len(groups):
        raise ValueError(f"{len(labels)} labels but {len(groups)} groups")
    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        raise ValueError(f"unknown label(s) {unknown}; expected {LABELS}")
    members: dict[Hashable, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    splits = [""] * len(labels)
    for k, label in enumerate(LABELS):
        units = [idx for idx in members.values() if labels[idx[0]] == label]  # in order of first item
        quota = split_sizes(sum(len(u) for u in units), valid_fraction, test_fraction)
        taken = {"valid": 0, "test": 0}
        for position in np.random.default_rng([seed, k]).permutation(len(units)):
            unit = units[position]
            split = next((s for s in ("test", "valid") if taken[s] + len(unit) <= quota[s]), "train")
            if split != "train":
                taken[split] += len(unit)
            for i in unit:
                splits[i] = split
    return splits
