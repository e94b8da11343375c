"""How a cell's training images are used, as the classifier loop sees it: a loss weight per image
and, for synthetic pretraining, which images train in the first phase and which in the second.

The policies decide (``schedule=mix | pretrain | weighted`` on the synthetic policies and classical
expansion); the loop
knows nothing of where an image came from beyond these arrays.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from synthaug.augment.policies import Policy
from synthaug.config.policies import Scheduled
from synthaug.data.cells import Cell
from synthaug.data.imageset import ImageSet


@dataclass(frozen=True)
class Schedule:
    """``weights`` (N,): loss weight per training image (None: all 1). With ``pretrain`` (N,) bool,
    training runs ``pretrain_epochs`` on those images first, then on ``finetune`` (N,) bool at
    ``finetune_lr`` (None: a tenth of the configured LR) with early stopping; without, one phase."""

    weights: np.ndarray | None = None
    pretrain: np.ndarray | None = None
    finetune: np.ndarray | None = None
    pretrain_epochs: int = 0
    finetune_lr: float | None = None


def expand_training_set(real: ImageSet, policies: Sequence[Policy], seed: int, cell: Cell | None = None) -> ImageSet:
    """Apply every policy's expansion in order and return the enlarged training set."""
    return training_plan(real, policies, seed, cell)[0]


def training_plan(
    real: ImageSet, policies: Sequence[Policy], seed: int, cell: Cell | None = None
) -> tuple[ImageSet, Schedule]:
    """Apply every policy's expansion in order (as :func:`expand_training_set`) and say how each image is used.

    Each policy draws from ``default_rng([seed, crc32(name)])``: the same policy adds the same
    images whatever it is combined with, which keeps paired comparisons paired.
    """
    current = real
    weights, first_only = [np.ones(len(real))], [np.zeros(len(real), dtype=bool)]
    pretrain: Scheduled | None = None
    for policy in policies:
        rng = np.random.default_rng([seed, zlib.crc32(policy.name.encode())])
        extra = policy.added(real, current, rng, cell)
        if extra is None or not len(extra):
            continue
        current = ImageSet.concat([current, extra])
        schedule = policy.schedule if isinstance(policy, Scheduled) else "mix"
        w = policy.w if isinstance(policy, Scheduled) and schedule == "weighted" else 1.0
        weights.append(np.full(len(extra), w))
        first_only.append(np.full(len(extra), schedule == "pretrain"))
        if schedule == "pretrain" and pretrain is None:
            assert isinstance(policy, Scheduled)
            pretrain = policy
    w_all, synthetic_first = np.concatenate(weights), np.concatenate(first_only)
    if pretrain is None:
        return current, Schedule(weights=None if (w_all == 1.0).all() else w_all)
    first = synthetic_first | ~synthetic_first if pretrain.pretrain_with_real else synthetic_first
    return current, Schedule(
        weights=None if (w_all == 1.0).all() else w_all,
        pretrain=first,
        finetune=~synthetic_first,
        pretrain_epochs=pretrain.pretrain_epochs,
        finetune_lr=pretrain.finetune_lr,
    )
