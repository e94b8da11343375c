"""Generative models behind one interface: ``fit`` / ``sample`` / ``save`` / ``load_generator``.

A family is registered by its config class in ``synthaug.config.generators`` (``FAMILIES``),
which names the class implementing it here; :func:`generator_class` loads it.
"""

from __future__ import annotations

from pathlib import Path

from synthaug.config.generators import FAMILIES, GeneratorConfig
from synthaug.data.imageset import ImageSet
from synthaug.generators.bank import load_bank, write_bank
from synthaug.generators.base import Generator, SampleOptions, derive_seed, generator_class, load_generator
from synthaug.generators.samplers import SAMPLERS
from synthaug.generators.training import NonFiniteLossError
from synthaug.generators.variation import make_variations


def fit(
    train_data: ImageSet,
    cfg: GeneratorConfig,
    run_dir: str | Path,
    seed: int = 0,
    resume: bool = False,
    unlabelled: ImageSet | None = None,
    start: Generator | None = None,
) -> Generator:
    """Train the family ``cfg.family`` on ``train_data`` (and ``unlabelled`` images where the family
    can learn from them); checkpoint and artifacts go to ``run_dir``. ``start``: a generator of the
    same family and network shape trained on unlabelled images alone (``cfg.pool_steps``) that this
    fit fine-tunes instead of starting from random weights."""
    if start is not None and (not cfg.pool_pretrain or start.family != cfg.family):
        raise ValueError(f"generator {cfg.name!r} (family {cfg.family}) cannot start from a {start.family} generator")
    cls = generator_class(cfg.family)
    return cls.fit(train_data, cfg, run_dir, seed=seed, resume=resume, unlabelled=unlabelled, start=start)


__all__ = [
    "FAMILIES",
    "SAMPLERS",
    "Generator",
    "GeneratorConfig",
    "NonFiniteLossError",
    "SampleOptions",
    "derive_seed",
    "fit",
    "generator_class",
    "load_bank",
    "load_generator",
    "make_variations",
    "write_bank",
]
