"""Splitting images into train/valid/test: how many go where, and which ones.

One counting rule for the whole project (:func:`split_sizes`: valid and test rounded half up,
at least one image left to train) and one assignment (:func:`assign_splits`: stratified by label,
seeded, groups kept whole). ``ingest`` splits a flat ``{real,fake}`` folder with both, grouping
byte-identical files (same md5) so that a duplicate never straddles two splits; the sample
generator uses :func:`split_sizes` for its per-class counts (its images are drawn independently,
so it needs no shuffle).

The assignment is scikit-learn's ``train_test_split`` on one row per group, with integer
``test_size`` (group counts), called per label: that is the stratification, and it lands exactly
on :func:`split_sizes`' counts. A single call with ``stratify=labels`` would not: it shares the
holdout out by its own rounding over the totals (5 real + 100 fake at 0.1/0.1: 1 real and 21
fake held out, where the per-class rule gives 2 and 20). What scikit-learn does not do is kept
around it: groups (a row per group, expanded back to its files), image quotas with duplicates
(a draw holding more images than the quota is redrawn with fewer groups), and a class too small
for a holdout (its quotas are 0: it stays in train, and ingest warns).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np
from sklearn.model_selection import train_test_split

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

    One row per group, under the label of its first item. Per label (``LABELS`` order), the
    image quotas are :func:`split_sizes` of the label's item count; ``test`` is drawn from the
    label's groups by ``sklearn.model_selection.train_test_split`` with an integer ``test_size``
    (a group count), then ``valid`` from the groups left, and the rest is train. A group larger
    than a quota is not a candidate for that split; if the groups drawn hold more images than the
    quota, the draw is repeated with fewer groups (same ``random_state``), so no holdout split
    gets more than its quota and train is never empty. With every item its own group the group
    counts are the quotas: exactly :func:`split_sizes` per label. A label whose quotas are 0
    (e.g. a single image) stays in train. The result depends on the items' order (give them in a
    fixed one, e.g. sorted by path), the fractions and ``seed`` only.
    """
    if len(labels) != len(groups):
        raise ValueError(f"{len(labels)} labels but {len(groups)} groups")
    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        raise ValueError(f"unknown label(s) {unknown}; expected {LABELS}")
    members: dict[Hashable, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    splits = ["train"] * len(labels)
    for k, label in enumerate(LABELS):
        units = [idx for idx in members.values() if labels[idx[0]] == label]  # in order of first item
        quota = split_sizes(sum(len(u) for u in units), valid_fraction, test_fraction)
        left = list(range(len(units)))
        for step, split in enumerate(("test", "valid")):
            state = int(np.random.SeedSequence([seed, k, step]).generate_state(1)[0])
            taken = _draw([u for u in left if len(units[u]) <= quota[split]], units, quota[split], state)
            for u in taken:
                for i in units[u]:
                    splits[i] = split
            gone = set(taken)
            left = [u for u in left if u not in gone]
    return splits


def _draw(candidates: list[int], units: list[list[int]], quota: int, state: int) -> list[int]:
    """As many of ``candidates`` (group indices) as ``train_test_split`` can draw, seeded by
    ``state``, without their items exceeding ``quota``: first ``quota`` groups (all of them if
    fewer), then fewer by the excess until the draw fits."""
    n = min(quota, len(candidates))
    while n > 0:
        if n == len(candidates):  # everything fits (train_test_split needs a non-empty rest)
            taken = list(candidates)
        else:
            taken = list(train_test_split(candidates, test_size=n, random_state=state)[1])
        excess = sum(len(units[u]) for u in taken) - quota
        if excess <= 0:
            return taken
        n -= excess
    return []
