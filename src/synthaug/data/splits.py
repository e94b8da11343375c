"""Seeded stratified splits and real-fraction subsets, recorded by file id.

Seeds pair across policies: the split and subset for (seed, fraction) depend only on the
labels, the seed and the fraction, never on the policy, so every policy sees the same images.
"""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held_out) with ``fraction`` of every class held out.

    Every class with at least two members keeps at least one and holds out at least one, so a
    rare class never vanishes from either side. Returns sorted int64 index arrays.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split fraction must lie strictly between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    kept: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_held = round(fraction * len(idx))
        n_held = min(max(n_held, 1), len(idx) - 1) if len(idx) >= 2 else 0
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a stratified random ``fraction`` of the data (at least one image per class).

    Nested across fractions for one seed: the 10% subset is contained in the 30% subset, so a
    data-efficiency curve compares growing sets rather than unrelated draws.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"real fraction must lie in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        order = idx[rng.permutation(len(idx))]
        n = max(1, round(fraction * len(idx)))
        chosen.append(order[:n])
    return np.sort(np.concatenate(chosen))


def train_val_indices(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices carved from the training split, stratified, seeded."""
    return stratified_split(labels, val_fraction, seed=seed + 10_007)


def cell_indices(labels: np.ndarray, fraction: float, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices into the training pool for one (real fraction, seed) cell.

    The real subset is drawn first (nested across fractions), then validation is carved from
    it: a user who owns 10% of the data would validate on part of that 10%, not on more.
    Depends only on labels, fraction and seed, so every policy of a seed sees the same images.
    """
    subset = stratified_subset(labels, fraction, seed)
    fit, val = train_val_indices(labels[subset], val_fraction, seed)
    return subset[fit], subset[val]
