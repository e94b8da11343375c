"""A study cell: one (real fraction, seed) pair, its real training and validation images, and
where its generators and banks live. Every stage that works per cell receives one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthaug.data.imageset import ImageSet
from synthaug.data.splits import cell_indices
from synthaug.rundir import RunDir, cell_key


@dataclass(frozen=True, eq=False)
class Cell:
    """Indices into the training pool: ``fit_idx`` (the real subset a classifier or generator
    trains on) and ``val_idx`` (its validation images). ``run`` is None outside a study."""

    fraction: float
    seed: int
    fit_idx: np.ndarray  # (n_fit,) int64, sorted
    val_idx: np.ndarray  # (n_val,) int64, sorted
    run: RunDir | None = None

    @classmethod
    def of(cls, pool: ImageSet, fraction: float, seed: int, val_fraction: float, run: RunDir | None = None) -> Cell:
        """The cell's split of ``pool`` by whole groups (``pool.groups``: patients or duplicate groups).

        It depends only on labels, groups, fraction and seed, so every policy sees the same images.
        """
        fit, val = cell_indices(pool.labels, fraction, val_fraction, seed, pool.groups)
        return cls(float(fraction), int(seed), fit, val, run)

    @property
    def key(self) -> str:
        return cell_key(self.fraction, self.seed)

    def fit(self, pool: ImageSet) -> ImageSet:
        return pool.subset(self.fit_idx)

    def val(self, pool: ImageSet) -> ImageSet:
        return pool.subset(self.val_idx)

    def rest(self, pool: ImageSet) -> ImageSet:
        """The training images the cell neither trains nor validates on (whole groups, like its splits)."""
        keep = np.ones(len(pool), dtype=bool)
        keep[self.fit_idx] = False
        keep[self.val_idx] = False
        return pool.subset(np.flatnonzero(keep))

    def _run(self) -> RunDir:
        if self.run is None:
            raise ValueError(f"cell {self.key} has no run directory: synthetic policies need `synthaug run`")
        return self.run

    def bank_dir(self, bank: str) -> Path:
        return self._run().bank_dir(bank, self.fraction, self.seed)

    def generator_dir(self, name: str) -> Path:
        return self._run().generator_dir(name, self.fraction, self.seed)
