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
from typing import ClassVar

import numpy as np
import pandas as pd

from synthaug.augment.policies import Policy, PolicyContext, register_policy
from synthaug.data.imageset import ImageSet
from synthaug.layout import SCORES, bank_dir, bank_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BankRequest:
    """Images per class one policy needs from one bank of its cell."""

    bank: str
    generator: str
    counts: np.ndarray  # (num_classes,) int
    variation: bool
    filtered: bool


@dataclass(frozen=True)
class _FromBank(Policy):
    """Shared behaviour: which bank, how many per class, filters, and taking the images."""

    gen: str = ""
    min_confidence: float | None = None
    drop_memorized: bool = False
    variation: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not self.gen:
            raise ValueError(f"{self.name}: name the generator, e.g. {self.name}:gen=ddpm")
        if self.min_confidence is not None and not 0 <= self.min_confidence <= 1:
            raise ValueError(f"{self.name}: min_confidence must lie in [0, 1], got {self.min_confidence}")

    @property
    def filtered(self) -> bool:
        return self.min_confidence is not None or self.drop_memorized

    def counts(self, real: ImageSet, fraction: float) -> np.ndarray:
        raise NotImplementedError

    def amount(self) -> str:
        """How many images the policy adds, in words."""
        raise NotImplementedError

    def describe(self) -> str:
        filters = []
        if self.min_confidence is not None:
            filters.append(f"judge confidence ≥ {self.min_confidence:g}")
        if self.drop_memorized:
            filters.append("memorized images dropped")
        kept = f" ({', '.join(filters)})" if filters else ""
        return f"{self.amount()} from generator '{self.gen}'{kept}"

    def request(self, real: ImageSet, fraction: float) -> BankRequest:
        counts = np.asarray(self.counts(real, fraction), dtype=np.int64)
        return BankRequest(bank_name(self.gen, self.variation), self.gen, counts, self.variation, self.filtered)

    def added(self, real: ImageSet, current: ImageSet, rng: np.random.Generator, ctx: PolicyContext) -> ImageSet | None:
        if ctx.run_dir is None or "fraction" not in ctx.extras or "seed" not in ctx.extras:
            raise ValueError(f"policy {self.name} needs a study run directory with banks (run it with `synthaug run`)")
        fraction, seed = float(ctx.extras["fraction"]), int(ctx.extras["seed"])
        want = self.counts(real, fraction)
        if want.sum() == 0:
            return None
        folder = bank_dir(ctx.run_dir, bank_name(self.gen, self.variation), fraction, seed)
        return take_from_bank(folder, want, self.min_confidence, self.drop_memorized, real.class_names)


def take_from_bank(
    folder: Path,
    want: np.ndarray,
    min_confidence: float | None = None,
    drop_memorized: bool = False,
    class_names: tuple[str, ...] | None = None,
) -> ImageSet:
    """The first ``want[c]`` images of each class c of the bank in ``folder`` that pass the filters."""
    from synthaug.generators.bank import load_bank  # generators import torch-heavy modules; load on use

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
@dataclass(frozen=True)
class SyntheticExpansion(_FromBank):
    """Add round(y·n_c) generated images of each class (or, with fill, up to the full-data size)."""

    name: ClassVar[str] = "synthetic"
    y: float = 1.0
    fill: bool = False
    per_class: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.y < 0:
            raise ValueError(f"synthetic: y must be >= 0, got {self.y}")
        if self.per_class is not None and (self.per_class < 0 or self.fill):
            raise ValueError(f"synthetic: per_class must be >= 0 and not combined with fill, got {self.per_class}")

    def amount(self) -> str:
        if self.per_class is not None:
            return f"+{self.per_class} synthetic images per class"
        return "synthetic images up to the full training size" if self.fill else f"+{self.y:g}·N synthetic images"

    def counts(self, real: ImageSet, fraction: float) -> np.ndarray:
        if self.per_class is not None:
            return np.full(real.num_classes, self.per_class, dtype=np.int64)
        return _fill(real, fraction) if self.fill else _stratified(real, self.y)


@register_policy("balance")
@dataclass(frozen=True)
class BalanceClasses(_FromBank):
    """Top every class up to the size of the largest class of the real subset."""

    name: ClassVar[str] = "balance"

    def amount(self) -> str:
        return "synthetic images topping every class up to the largest"

    def counts(self, real: ImageSet, fraction: float) -> np.ndarray:
        counts = real.class_counts()
        return (counts.max() - counts).astype(np.int64)


@register_policy("variation")
@dataclass(frozen=True)
class VariationExpansion(_FromBank):
    """Add variations of the cell's own real images: round(y·n_c) per class, one per source while y ≤ 1."""

    name: ClassVar[str] = "variation"
    variation: ClassVar[bool] = True
    y: float = 1.0
    fill: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.y < 0:
            raise ValueError(f"variation: y must be >= 0, got {self.y}")

    def amount(self) -> str:
        what = "SDEdit variations of the cell's real images"
        return f"{what} up to the full training size" if self.fill else f"+{self.y:g}·N {what}"

    def counts(self, real: ImageSet, fraction: float) -> np.ndarray:
        return _fill(real, fraction) if self.fill else _stratified(real, self.y)
