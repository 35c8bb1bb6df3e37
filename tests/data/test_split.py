"""deepfake_detection.data.split: the one counting rule and the one train/valid/test assignment."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from deepfake_detection.data.sample import split_counts
from deepfake_detection.data.split import assign_splits, split_sizes


def test_split_sizes_round_half_up_and_always_leave_train_something():
    assert split_sizes(100, 0.2, 0.1) == {"train": 70, "valid": 20, "test": 10}
    assert split_sizes(30, 0.15, 0.15) == {"train": 20, "valid": 5, "test": 5}  # 4.5 rounds up
    assert split_sizes(1, 0.15, 0.15) == {"train": 1, "valid": 0, "test": 0}
    assert split_sizes(2, 0.45, 0.45) == {"train": 1, "valid": 0, "test": 1}  # valid gives back on a tie
    assert split_sizes(0, 0.15, 0.15) == {"train": 0, "valid": 0, "test": 0}
    with pytest.raises(ValueError, match="sum below 1"):
        split_sizes(10, 0.5, 0.5)


def test_the_sample_generator_counts_by_the_same_rule():
    for n in (4, 10, 30, 600):
        assert split_counts(n, (0.7, 0.15, 0.15)) == split_sizes(n, 0.15, 0.15)


def _labels(n_real: int, n_fake: int) -> list[str]:
    return ["real"] * n_real + ["fake"] * n_fake


def test_assignment_is_stratified_with_exact_counts_per_label():
    labels = _labels(40, 60)
    splits = assign_splits(labels, list(range(100)), 0.2, 0.1, seed=7)
    got = Counter(zip(labels, splits))
    assert got == {
        ("real", "train"): 28,
        ("real", "valid"): 8,
        ("real", "test"): 4,
        ("fake", "train"): 42,
        ("fake", "valid"): 12,
        ("fake", "test"): 6,
    }


def test_assignment_is_seeded():
    labels, groups = _labels(30, 30), list(range(60))
    a = assign_splits(labels, groups, 0.15, 0.15, seed=3)
    assert a == assign_splits(labels, groups, 0.15, 0.15, seed=3)
    b = assign_splits(labels, groups, 0.15, 0.15, seed=4)
    assert a != b and Counter(a) == Counter(b)  # other members, same sizes


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    ("n_real", "n_fake", "valid", "test"), [(23, 41, 0.15, 0.2), (5, 100, 0.1, 0.1), (2, 3, 0.45, 0.45)]
)
def test_with_no_duplicates_each_label_gets_exactly_split_sizes(seed, n_real, n_fake, valid, test):
    """Every item its own group: the per-label counts are split_sizes' exactly (where a single
    stratified train_test_split over both labels would be off by one, e.g. 5 real + 100 fake),
    and the same seed gives the same members."""
    labels = _labels(n_real, n_fake)
    splits = assign_splits(labels, list(range(len(labels))), valid, test, seed=seed)
    assert splits == assign_splits(labels, list(range(len(labels))), valid, test, seed=seed)
    for label, n in (("real", n_real), ("fake", n_fake)):
        got = Counter(s for lab, s in zip(labels, splits) if lab == label)
        assert {s: got[s] for s in ("train", "valid", "test")} == split_sizes(n, valid, test)


def test_a_class_too_small_for_a_holdout_stays_in_train():
    labels = _labels(1, 20)
    splits = assign_splits(labels, list(range(21)), 0.15, 0.15, seed=0)
    assert splits[0] == "train"
    assert Counter(splits[1:]) == {"train": 14, "valid": 3, "test": 3}


@pytest.mark.parametrize("seed", range(8))
def test_a_group_never_straddles_splits_and_no_quota_is_exceeded(seed):
    rng = np.random.default_rng(seed)
    labels = _labels(50, 50)
    groups = [f"{lab}{rng.integers(0, 30)}" for lab in labels]  # many duplicates, up to ~6 per group
    groups[0] = groups[60] = "shared"  # one file under both labels
    splits = assign_splits(labels, groups, 0.2, 0.2, seed=seed)
    by_group: dict[str, set[str]] = {}
    for g, s in zip(groups, splits):
        by_group.setdefault(g, set()).add(s)
    assert all(len(s) == 1 for s in by_group.values())
    for label in ("real", "fake"):  # the shared group counts under "real", its first item's label
        got = Counter(
            s for lab, g, s in zip(labels, groups, splits) if lab == label and not (g == "shared" and lab == "fake")
        )
        quota = split_sizes(sum(got.values()), 0.2, 0.2)
        assert got["train"] >= 1 and got["valid"] <= quota["valid"] and got["test"] <= quota["test"]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="2 labels but 1 groups"):
        assign_splits(["real", "fake"], [0], 0.1, 0.1, seed=0)
    with pytest.raises(ValueError, match="unknown label"):
        assign_splits(["REAL"], [0], 0.1, 0.1, seed=0)
