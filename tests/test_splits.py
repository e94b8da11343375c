import numpy as np
import pytest

from synthaug.data.splits import stratified_split, stratified_subset, train_val_indices

LABELS = np.repeat(np.arange(4), [100, 50, 20, 3])


def test_split_is_stratified_disjoint_and_complete() -> None:
    kept, held = stratified_split(LABELS, 0.2, seed=0)
    assert len(np.intersect1d(kept, held)) == 0 and len(kept) + len(held) == len(LABELS)
    assert np.bincount(LABELS[held]).tolist() == [20, 10, 4, 1]  # rare class still on both sides


def test_split_is_deterministic_per_seed() -> None:
    a = stratified_split(LABELS, 0.3, seed=5)[1]
    assert np.array_equal(a, stratified_split(LABELS, 0.3, seed=5)[1])
    assert not np.array_equal(a, stratified_split(LABELS, 0.3, seed=6)[1])


def test_subsets_are_stratified_and_nested() -> None:
    small, large = stratified_subset(LABELS, 0.1, 1), stratified_subset(LABELS, 0.3, 1)
    assert np.bincount(LABELS[small]).tolist() == [10, 5, 2, 1]  # at least one image per class
    assert set(small) <= set(large)
    assert len(stratified_subset(LABELS, 1.0, 1)) == len(LABELS)


def test_bad_fractions_raise() -> None:
    with pytest.raises(ValueError, match="real fraction"):
        stratified_subset(LABELS, 0.0, 0)
    with pytest.raises(ValueError, match="split fraction"):
        stratified_split(LABELS, 1.0, 0)


def test_val_split_differs_from_test_split_for_same_seed() -> None:
    assert not np.array_equal(train_val_indices(LABELS, 0.2, 0)[1], stratified_split(LABELS, 0.2, 0)[1])
