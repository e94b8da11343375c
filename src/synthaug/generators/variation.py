"""Image variations (SDEdit / img2img): noise a real image of a class to strength s, i.e. to the
timestep s * T, and denoise it with the trained diffusion model. Each output keeps its source id.
"""

from __future__ import annotations

import numpy as np
import torch

from synthaug.data.imageset import ImageSet, to_float, to_uint8
from synthaug.generators.base import Generator, RngLike, as_rng, resize


@torch.no_grad()
def make_variations(
    generator: Generator,
    sources: np.ndarray,
    class_id: int,
    strength: float,
    rng: RngLike,
    sampler: str | None = None,
    steps: int | None = None,
    guidance: float | None = None,
) -> np.ndarray:
    """Variations of ``sources`` (n, H, W) uint8 of class ``class_id``; returns (n, H, W) uint8.

    ``strength`` in [0, 1]: 0 returns the sources, 1 ignores them (plain sampling). ``rng`` may be
    a list of per-image generators, so image k is the same whatever batch it is made in.
    """
    if not generator.cfg.variations:
        raise ValueError(f"family '{generator.family}' cannot make variations of real images")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must lie in [0, 1], got {strength}")
    assert generator.cfg.image_size
    n, rng_ = len(sources), as_rng(rng)
    opts = generator.options(sampler, steps, guidance)
    assert opts.sampler and opts.steps
    net, labels = generator.net_for(class_id, n)
    x0 = resize(to_float(sources), generator.cfg.image_size).to(generator.device)  # (n, 1, S, S)
    out = generator.vary(net, labels, x0, strength, rng_, opts)
    if strength == 0.0:
        return np.ascontiguousarray(sources, dtype=np.uint8)
    return to_uint8(resize(out.float(), generator.data_size))


def pick_sources(sources: ImageSet, class_id: int, ks: np.ndarray, seed: int) -> np.ndarray:
    """Indices into ``sources`` for variation numbers ``ks`` of a class: a seeded permutation of the
    class's images, cycled, so every source is used about equally and image k always has the same source."""
    members = np.flatnonzero(sources.labels == class_id)
    if len(members) == 0:
        raise ValueError(f"no source images of class {sources.class_names[class_id]!r} to make variations from")
    members = members[np.argsort(sources.ids[members], kind="stable")]  # independent of input order
    order = np.random.default_rng([seed, class_id]).permutation(len(members))
    return members[order[np.asarray(ks) % len(members)]]
