"""Seeded, stratified, *grouped* splits and real-fraction subsets, recorded by file id.

The unit of every split is a group: the images of one patient (when the data say so) or of one
near-duplicate group, so no patient or copy is on both sides of a split. An image without a
group is a group of its own; with every image its own group the functions reduce exactly to
plain stratified splits.

Seeds pair across policies: the split and subset for (seed, fraction) depend only on the
labels, the groups, the seed and the fraction, never on the policy, so every policy sees the
same images.
"""

from __future__ import annotations

import numpy as np


def _units(labels: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(unit of each image as 0..U-1 in order of first appearance, class of each unit).

    A unit's class is the most common label of its images (ties: the smallest), so a unit whose
    images disagree is stratified once, by its majority.
    """
    n = len(labels)
    if groups is None:
        return np.arange(n), np.asarray(labels)
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # units numbered by first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    unit = rank[inverse]
    classes, label_idx = np.unique(labels, return_inverse=True)
    counts = np.zeros((len(order), len(classes)), np.int64)  # (units, classes)
    np.add.at(counts, (unit, label_idx), 1)
    return unit, classes[counts.argmax(axis=1)]  # argmax: the first (smallest) label on ties


def _by_class(unit: np.ndarray, unit_class: np.ndarray) -> dict[int, np.ndarray]:
    """Per class: its units, in order of first appearance."""
    return {int(c): np.flatnonzero(unit_class == c) for c in np.unique(unit_class)}


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held_out), holding out ``fraction`` of every class's groups, each whole.

    Every class with at least two groups keeps at least one and holds out at least one, so a
    rare class never vanishes from either side. Returns sorted int64 index arrays.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split fraction must lie strictly between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    unit, unit_class = _units(labels, groups)
    held_units: list[np.ndarray] = []
    for units in _by_class(unit, unit_class).values():
        perm = rng.permutation(len(units))
        taken = round(fraction * len(units))
        taken = min(max(taken, 1), len(units) - 1) if len(units) >= 2 else 0
        held_units.append(units[perm[:taken]])
    held = np.isin(unit, np.concatenate(held_units) if held_units else np.empty(0, int))
    return np.flatnonzero(~held), np.flatnonzero(held)


def stratified_subset(labels: np.ndarray, fraction: float, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Indices of a stratified random ``fraction`` of each class's groups, each whole (at least one per class).

    The share of images follows from the group sizes (``splits.json`` records it per class).

    Nested across fractions for one seed: the 10% subset is contained in the 30% subset, so a
    data-efficiency curve compares growing sets rather than unrelated draws.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"real fraction must lie in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    unit, unit_class = _units(labels, groups)
    chosen: list[np.ndarray] = []
    for units in _by_class(unit, unit_class).values():
        perm = rng.permutation(len(units))
        chosen.append(units[perm[: max(1, round(fraction * len(units)))]])
    return np.flatnonzero(np.isin(unit, np.concatenate(chosen)))


def train_val_indices(
    labels: np.ndarray, val_fraction: float, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices carved from the training split, stratified, grouped, seeded."""
    return stratified_split(labels, val_fraction, seed=seed + 10_007, groups=groups)


def cell_indices(
    labels: np.ndarray, fraction: float, val_fraction: float, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices into the training pool for one (real fraction, seed) cell.

    The real subset is drawn first (whole groups, nested across fractions), then validation is
    carved from it (whole groups): a lab that owns 10% of the patients validates on some of
    them, not on more, and never on a patient it trains on.
    """
    subset = stratified_subset(labels, fraction, seed, groups)
    sub_groups = None if groups is None else groups[subset]
    fit, val = train_val_indices(labels[subset], val_fraction, seed, sub_groups)
    return subset[fit], subset[val]
