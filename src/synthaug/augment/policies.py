"""Augmentation policies behind a name registry: expansion (adds images) and online (per batch).

``added(real, current, rng, cell)`` returns images to add before training (sized from ``real``,
the real subset: p·N, Y·N; ``balance`` tops classes up from ``current``, the set so far).
``online()`` returns a :class:`BatchTransform` applied to every uint8 training batch.
A policy class extends its parameters (``synthaug.config.policies``, validated when a config
loads) with this behaviour and registers with ``@register_policy("name")``. Randomness comes
only from the generators passed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
import torch
from torch.nn import functional as nnf
from torchvision.transforms import v2

from synthaug.config.policies import (
    POLICIES,
    AutoAugment,
    Basic,
    Classical,
    PolicyParams,
    PolicySpec,
    RandAugment,
    TrivialAugment,
    policy_params,
)
from synthaug.data.cells import Cell
from synthaug.data.imageset import ImageSet

PolicyT = TypeVar("PolicyT", bound="type[Policy]")
_REGISTRY: dict[str, type[Policy]] = {}


class BatchTransform(Protocol):
    """uint8 (B, 1, H, W) -> uint8 (B, 1, H, W); randomness only from ``gen``."""

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor: ...


class Policy(PolicyParams):
    """A policy's parameters (``synthaug.config.policies``) with its behaviour; the base does nothing.

    Subclasses override :meth:`added` and/or :meth:`online`. ``cell`` is the study cell the
    training set is built for (None outside a study).
    """

    def added(self, real: ImageSet, current: ImageSet, rng: np.random.Generator, cell: Cell | None) -> ImageSet | None:
        return None

    def online(self) -> BatchTransform | None:
        return None


def register_policy(name: str) -> Callable[[PolicyT], PolicyT]:
    """Class decorator adding a policy to the registry under ``name`` (CLI choices and config checks use it).

    A built-in policy extends the parameter class of the same name in ``synthaug.config.policies``;
    a new policy's own fields become its parameters.
    """

    def deco(cls: PolicyT) -> PolicyT:
        if name in _REGISTRY:
            raise ValueError(f"policy {name!r} is already registered")
        params = POLICIES.setdefault(name, cls)
        if not issubclass(cls, params):
            raise TypeError(f"policy {name!r} must extend its parameters {params.__name__}")
        _REGISTRY[name] = cls
        return cls

    return deco


def build_policy(spec: PolicySpec) -> Policy:
    """Instantiate the registered policy for ``spec``; unknown names or parameters raise ``ValueError``."""
    params = policy_params(spec)  # the named error for unknown names, keys and values
    return _REGISTRY[spec.name].model_validate(params.model_dump(exclude_unset=True))


def online_transform(policies: Sequence[Policy]) -> BatchTransform | None:
    """The policies' online transforms chained in order, or None when there are none."""
    steps = [t for t in (p.online() for p in policies) if t is not None]
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]

    def chained(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        for step in steps:
            images = step(images, gen)
        return images

    return chained


# --- classical geometric transform (flip / rotation / resized crop), params drawn separately ---


@dataclass(frozen=True)
class GeometricParams:
    flip: bool
    angle: float
    crop: tuple[int, int, int, int]  # top, left, height, width


@dataclass(frozen=True)
class Geometric:
    """Horizontal flip, rotation and random resized crop with explicit generator (torchvision-style get_params)."""

    flip_p: float = 0.5
    degrees: float = 15.0
    scale: tuple[float, float] = (0.8, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def get_params(self, height: int, width: int, gen: torch.Generator) -> GeometricParams:
        u = torch.rand(6, generator=gen).tolist()
        flip = u[0] < self.flip_p
        angle = (2 * u[1] - 1) * self.degrees
        area = height * width * (self.scale[0] + u[2] * (self.scale[1] - self.scale[0]))
        log_r = math.log(self.ratio[0]) + u[3] * (math.log(self.ratio[1]) - math.log(self.ratio[0]))
        h = min(height, max(1, round(math.sqrt(area / math.exp(log_r)))))
        w = min(width, max(1, round(math.sqrt(area * math.exp(log_r)))))
        top, left = int(u[4] * (height - h + 1)), int(u[5] * (width - w + 1))
        return GeometricParams(flip, angle, (top, left, h, w))

    @staticmethod
    def matrix(p: GeometricParams, height: int, width: int) -> torch.Tensor:
        """Affine map (2, 3) from output to input coordinates (grid_sample's normalised [-1, 1]).

        input = Flip · D⁻¹ R D · (S · u + c): crop (scale S, centre c), then undo the rotation in
        pixel units (D = diag(W, H) keeps non-square images from shearing), then the flip.
        """
        top, left, h, w = p.crop
        s = torch.tensor([[w / width, 0.0], [0.0, h / height]], dtype=torch.float64)
        c = torch.tensor([(2 * left + w) / width - 1, (2 * top + h) / height - 1], dtype=torch.float64)
        a = math.radians(p.angle)
        rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
        d = torch.diag(torch.tensor([width, height], dtype=torch.float64))
        flip = torch.diag(torch.tensor([-1.0 if p.flip else 1.0, 1.0], dtype=torch.float64))
        lin = flip @ torch.linalg.inv(d) @ rot @ d
        return torch.cat([lin @ s, (lin @ c)[:, None]], dim=1).float()

    def apply_batch(
        self, images: torch.Tensor, params: Sequence[GeometricParams], nearest: bool = False
    ) -> torch.Tensor:
        """images: uint8 (B, C, H, W), one params per image -> uint8 (B, C, H, W); one grid_sample call."""
        b, _, h, w = images.shape
        theta = torch.stack([self.matrix(p, h, w) for p in params])  # (B, 2, 3)
        grid = nnf.affine_grid(theta, [b, 1, h, w], align_corners=False)  # (B, H, W, 2)
        out = nnf.grid_sample(
            images.float(), grid, mode="nearest" if nearest else "bilinear", padding_mode="zeros", align_corners=False
        )
        return out.round_().clamp_(0, 255).to(images.dtype)

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        h, w = images.shape[-2:]
        return self.apply_batch(images, [self.get_params(h, w, gen) for _ in range(len(images))])


@register_policy("none")
class NoPolicy(Policy):
    """Real images only, no augmentation (the baseline)."""


@register_policy("classical")
class ClassicalExpansion(Classical, Policy):
    """Add round(p·N) flipped / rotated / cropped copies of randomly chosen real training images.

    Sources are drawn without replacement while p ≤ 1. Copies get ids ``<src_id>#classical<k>``.
    """

    def added(self, real: ImageSet, current: ImageSet, rng: np.random.Generator, cell: Cell | None) -> ImageSet | None:
        n_add = round(self.p * len(real))
        if n_add == 0:
            return None
        src = rng.choice(len(real), size=n_add, replace=n_add > len(real))  # (n_add,)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        geo = Geometric(self.flip_p, self.degrees, (self.min_scale, 1.0))
        h, w = real.images.shape[1:]
        params = [geo.get_params(h, w, gen) for _ in range(n_add)]
        images = geo.apply_batch(torch.from_numpy(real.images[src]).unsqueeze(1), params)  # (n_add, 1, H, W)
        masks = None
        if real.masks is not None:  # masks follow their image through the same params (nearest)
            masks = geo.apply_batch(torch.from_numpy(real.masks[src]).unsqueeze(1), params, nearest=True)
        return ImageSet(
            images=images[:, 0].numpy(),
            labels=real.labels[src],
            ids=np.array([f"{real.ids[s]}#classical{k}" for k, s in enumerate(src)], dtype=object),
            class_names=real.class_names,
            splits=np.full(n_add, "train", dtype=object),
            masks=None if masks is None else masks[:, 0].numpy(),
        )


@register_policy("basic")
class BasicOnline(Basic, Policy):
    """Flip / rotation / resized crop applied on the fly to every training image."""

    def online(self) -> BatchTransform:
        return Geometric(self.flip_p, self.degrees, (self.min_scale, 1.0))


@dataclass(frozen=True)
class SeededPerImage:
    """Apply a torchvision v2 transform image by image with randomness taken from ``gen``.

    torchvision's AutoAugment family draws from the global torch RNG; we fork it, seed the fork
    from ``gen`` and restore it afterwards, so no global state leaks in or out.
    """

    transform: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        seed = int(torch.randint(2**62, (1,), generator=gen))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return torch.stack([self.transform(img) for img in images])  # (B, 1, H, W) uint8


@register_policy("autoaugment")
class AutoAugmentOnline(AutoAugment, Policy):
    """torchvision AutoAugment (learned ImageNet / CIFAR10 / SVHN policy)."""

    def online(self) -> BatchTransform:
        return SeededPerImage(v2.AutoAugment(v2.AutoAugmentPolicy(self.policy)))


@register_policy("randaugment")
class RandAugmentOnline(RandAugment, Policy):
    """torchvision RandAugment: ``num_ops`` random operations at ``magnitude`` (0..30)."""

    def online(self) -> BatchTransform:
        return SeededPerImage(v2.RandAugment(num_ops=self.num_ops, magnitude=self.magnitude))


@register_policy("trivialaugment")
class TrivialAugmentOnline(TrivialAugment, Policy):
    """torchvision TrivialAugmentWide: one random operation at a random magnitude per image."""

    def online(self) -> BatchTransform:
        return SeededPerImage(v2.TrivialAugmentWide())
