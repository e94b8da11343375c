"""Synthetic expansion policies: images from the study's generator banks join the real subset.

- ``synthetic:gen=NAME,y=Y`` adds round(Y·n_c) images of every class c (n_c real images of c in
  the cell), so the synthetic share is stratified like the real data; ``fill=true`` instead adds
  what the class would have gained at real fraction 1 (X% real + the rest synthetic);
  ``per_class=K`` adds K images of every class (the seed report's 200 per class).
- ``balance:gen=NAME`` tops every class up to the largest class of the real subset.
- ``variation:gen=NAME,y=Y`` adds variations (SDEdit) of the cell's own real images, one per
  source image while Y ≤ 1 (the image-variation protocol).

Every policy reads the bank made for its cell (same real fraction and seed, so the generator
saw only that cell's real training images) and takes images in bank order, so a cell always
gets the same images. ``min_confidence=τ`` keeps only images that a classifier trained on the
real subset assigns to their class with probability ≥ τ; ``drop_memorized=true`` drops images
the memorization check flags. Both read ``scores.parquet`` written by the quality stage; the
bank holds ``study.bank.filter_reserve`` extra images so enough survive.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from synthaug.augment.policies import Policy, register_policy
from synthaug.config.policies import Balance, FromBank, Synthetic, Variation
from synthaug.data.cells import Cell
from synthaug.data.imageset import ImageSet
from synthaug.rundir import SCORES, bank_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BankRequest:
    """Images per class one policy needs from one bank of its cell."""

    bank: str
    generator: str
    counts: np.ndarray  # (num_classes,) int
    variation: bool
    filtered: bool


class BankPolicy(FromBank, Policy):
    """Shared behaviour: how many images per class, which bank of the cell, and taking them."""

    def counts(self, real: ImageSet, fraction: float) -> np.ndarray:
        raise NotImplementedError

    def request(self, real: ImageSet, fraction: float) -> BankRequest:
        counts = np.asarray(self.counts(real, fraction), dtype=np.int64)
        return BankRequest(bank_name(self.gen, self.variation), self.gen, counts, self.variation, self.filtered)

    def added(self, real: ImageSet, current: ImageSet, rng: np.random.Generator, cell: Cell | None) -> ImageSet | None:
        if cell is None or cell.run is None:
            raise ValueError(f"policy {self.name} needs a study run directory with banks (run it with `synthaug run`)")
        want = self.counts(real, cell.fraction)
        if want.sum() == 0:
            return None
        folder = cell.bank_dir(bank_name(self.gen, self.variation))
        return take_from_bank(folder, want, self.min_confidence, self.drop_memorized, real.class_names)


def take_from_bank(
    folder: Path,
    want: np.ndarray,
    min_confidence: float | None = None,
    drop_memorized: bool = False,
    class_names: tuple[str, ...] | None = None,
) -> ImageSet:
    """The first ``want[c]`` images of each class c of the bank in ``folder`` that pass the filters."""
    from synthaug.generators.bank import load_bank  # generators import diffusers; load on use

    data, _ = load_bank(folder)
    if class_names is not None and tuple(data.class_names) != tuple(class_names):
        raise ValueError(f"bank {folder} has classes {data.class_names}, the data has {class_names}")
    keep = np.ones(len(data), dtype=bool)
    if min_confidence is not None or drop_memorized:
        scores_path = folder / SCORES
        if not scores_path.exists():
            raise FileNotFoundError(
                f"{scores_path} is missing: filtering synthetic images needs the quality stage "
                "(set quality.enabled: true and run the study again; nothing computed is lost)"
            )
        scores = pd.read_parquet(scores_path).set_index("id").reindex(data.ids)
        if scores["confidence"].isna().any():
            raise ValueError(f"{scores_path} does not score every image of the bank; rerun with --force quality")
        if min_confidence is not None:
            keep &= scores["confidence"].to_numpy(float) >= min_confidence
        if drop_memorized:
            keep &= ~scores["memorized"].to_numpy(bool)
    order = np.argsort(data.ids.astype(str), kind="stable")  # ids end in the image number k
    chosen: list[np.ndarray] = []
    for c, n in enumerate(want):
        members = order[(data.labels[order] == c) & keep[order]]
        if len(members) < n:
            log.warning(
                "bank %s: class %s has %d usable images, %d wanted; using %d",
                folder, data.class_names[c], len(members), n, len(members),
            )  # fmt: skip
        chosen.append(members[:n])
    return data.subset(np.concatenate(chosen))


def _stratified(real: ImageSet, y: float) -> np.ndarray:
    return np.rint(y * real.class_counts()).astype(np.int64)


def _fill(real: ImageSet, fraction: float) -> np.ndarray:
    counts = real.class_counts()
    return np.maximum(np.rint(counts / fraction).astype(np.int64) - counts, 0)


@register_policy("synthetic")
class SyntheticExpansion(Synthetic, BankPolicy):
    """Add round(y·n_c) generated images of each class (or, with fill, up to the full-data size)."""

    def counts(self, real: ImageSet, fraction: float) -> np.ndarray:
        if self.per_class is not None:
            return np.full(real.num_classes, self.per_class, dtype=np.int64)
        return _fill(real, fraction) if self.fill else _stratified(real, self.y)


@register_policy("balance")
class BalanceClasses(Balance, BankPolicy):
    """Top every class up to the size of the largest class of the real subset."""

    def counts(self, real: ImageSet, fraction: float) -> np.ndarray:
        counts = real.class_counts()
        return (counts.max() - counts).astype(np.int64)


@register_policy("variation")
class VariationExpansion(Variation, BankPolicy):
    """Add variations of the cell's own real images: round(y·n_c) per class, one per source while y ≤ 1."""

    def counts(self, real: ImageSet, fraction: float) -> np.ndarray:
        return _fill(real, fraction) if self.fill else _stratified(real, self.y)
