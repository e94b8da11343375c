"""Generative models behind one interface: ``fit`` / ``sample`` / ``save`` / ``load_generator``.

``GENERATORS`` maps family names (the CLI's choices) to classes; importing this package
registers every family.
"""

from __future__ import annotations

from pathlib import Path

from synthaug.data.imageset import ImageSet
from synthaug.generators import ddpm, gan, vae  # noqa: F401  (registers the families)
from synthaug.generators.bank import load_bank, write_bank
from synthaug.generators.base import GENERATORS, Generator, SampleOptions, derive_seed, load_generator
from synthaug.generators.config import DDPMConfig, GANConfig, GeneratorConfig, VAEConfig
from synthaug.generators.samplers import SAMPLERS
from synthaug.generators.training import NonFiniteLossError
from synthaug.generators.variation import make_variations


def fit(
    train_data: ImageSet, cfg: GeneratorConfig, run_dir: str | Path, seed: int = 0, resume: bool = False
) -> Generator:
    """Train the family ``cfg.family`` on ``train_data``; checkpoint and artifacts go to ``run_dir``."""
    if cfg.family not in GENERATORS:
        raise ValueError(f"unknown generator family {cfg.family!r}; choose one of {', '.join(GENERATORS)}")
    return GENERATORS[cfg.family].fit(train_data, cfg, run_dir, seed=seed, resume=resume)


__all__ = [
    "GENERATORS",
    "SAMPLERS",
    "DDPMConfig",
    "GANConfig",
    "Generator",
    "GeneratorConfig",
    "NonFiniteLossError",
    "SampleOptions",
    "VAEConfig",
    "derive_seed",
    "fit",
    "load_bank",
    "load_generator",
    "make_variations",
    "write_bank",
]
