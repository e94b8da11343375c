"""Augmentation policies behind a name registry: expansion (adds images) and online (per batch).

``added(real, current, rng, ctx)`` returns images to add before training (sized from ``real``,
the real subset: p·N, Y·N; ``balance`` tops classes up from ``current``, the set so far).
``online()`` returns a :class:`BatchTransform` applied to every uint8 training batch.
New policies register with ``@register_policy("name")`` on a class taking the spec's params as
keyword arguments. Randomness comes only from the generators passed in.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
import torch
from torch.nn import functional as nnf
from torchvision.transforms import v2

from synthaug.augment.config import PolicySpec
from synthaug.data.imageset import ImageSet

PolicyT = TypeVar("PolicyT", bound=Callable[..., "Policy"])
_REGISTRY: dict[str, Callable[..., Policy]] = {}


@dataclass(frozen=True)
class PolicyContext:
    """What expansion policies may need beyond the real images (synthetic banks live under ``run_dir``)."""

    run_dir: Path | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)


class BatchTransform(Protocol):
    """uint8 (B, 1, H, W) -> uint8 (B, 1, H, W); randomness only from ``gen``."""

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor: ...


class Policy:
    """Base class: does nothing. Subclasses override :meth:`added` and/or :meth:`online`."""

    name: ClassVar[str] = "none"

    def added(self, real: ImageSet, current: ImageSet, rng: np.random.Generator, ctx: PolicyContext) -> ImageSet | None:
        return None

    def online(self) -> BatchTransform | None:
        return None

    def describe(self) -> str:
        """What the policy does, in a few words (the report's table of approaches)."""
        return "no augmentation"


def register_policy(name: str) -> Callable[[PolicyT], PolicyT]:
    """Class decorator adding a policy to the registry under ``name`` (CLI choices come from it)."""

    def deco(factory: PolicyT) -> PolicyT:
        if name in _REGISTRY:
            raise ValueError(f"policy {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return deco


def available_policies() -> list[str]:
    return sorted(_REGISTRY)


def build_policy(spec: PolicySpec) -> Policy:
    """Instantiate the registered policy for ``spec``; unknown names or parameters raise ``ValueError``."""
    if spec.name not in _REGISTRY:
        raise ValueError(f"unknown augmentation policy {spec.name!r}; available: {available_policies()}")
    factory = _REGISTRY[spec.name]
    try:
        return factory(**spec.params)
    except TypeError as exc:
        allowed = [f.name for f in fields(factory)] if is_dataclass(factory) else "see its docstring"
        raise ValueError(f"policy {spec.name!r}: {exc}; its parameters are {allowed}") from exc


def expand_training_set(
    real: ImageSet, policies: Sequence[Policy], seed: int, ctx: PolicyContext | None = None
) -> ImageSet:
    """Apply every policy's expansion in order and return the enlarged training set.

    Each policy draws from ``default_rng([seed, crc32(name)])``: the same policy adds the same
    images whatever it is combined with, which keeps paired comparisons paired.
    """
    ctx = ctx or PolicyContext()
    current = real
    for policy in policies:
        rng = np.random.default_rng([seed, zlib.crc32(policy.name.encode())])
        extra = policy.added(real, current, rng, ctx)
        if extra is not None and len(extra):
            current = ImageSet.concat([current, extra])
    return current


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
@dataclass(frozen=True)
class NoPolicy(Policy):
    """Real images only, no augmentation (the baseline)."""

    name: ClassVar[str] = "none"


@register_policy("classical")
@dataclass(frozen=True)
class ClassicalExpansion(Policy):
    """Add round(p·N) flipped / rotated / cropped copies of randomly chosen real training images.

    Sources are drawn without replacement while p ≤ 1. Copies get ids ``<src_id>#classical<k>``.
    """

    name: ClassVar[str] = "classical"
    p: float = 0.2
    flip_p: float = 0.5
    degrees: float = 15.0
    min_scale: float = 0.8

    def __post_init__(self) -> None:
        if self.p < 0 or not 0 < self.min_scale <= 1 or not 0 <= self.flip_p <= 1:
            raise ValueError(f"classical: need p >= 0, 0 < min_scale <= 1, 0 <= flip_p <= 1; got {self}")

    def describe(self) -> str:
        return f"+{self.p:.0%} flipped / rotated / cropped copies of real images"

    def added(self, real: ImageSet, current: ImageSet, rng: np.random.Generator, ctx: PolicyContext) -> ImageSet | None:
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
@dataclass(frozen=True)
class BasicOnline(Policy):
    """Flip / rotation / resized crop applied on the fly to every training image."""

    name: ClassVar[str] = "basic"
    flip_p: float = 0.5
    degrees: float = 15.0
    min_scale: float = 0.8

    def online(self) -> BatchTransform:
        return Geometric(self.flip_p, self.degrees, (self.min_scale, 1.0))

    def describe(self) -> str:
        return "online flip / rotation / resized crop"


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
@dataclass(frozen=True)
class AutoAugmentOnline(Policy):
    """torchvision AutoAugment (learned ImageNet / CIFAR10 / SVHN policy)."""

    name: ClassVar[str] = "autoaugment"
    policy: str = "imagenet"

    def online(self) -> BatchTransform:
        choices = {p.name.lower(): p for p in v2.AutoAugmentPolicy}
        if self.policy not in choices:
            raise ValueError(f"autoaugment: policy must be one of {sorted(choices)}, got {self.policy!r}")
        return SeededPerImage(v2.AutoAugment(choices[self.policy]))

    def describe(self) -> str:
        return f"online AutoAugment ({self.policy} policy)"


@register_policy("randaugment")
@dataclass(frozen=True)
class RandAugmentOnline(Policy):
    """torchvision RandAugment: ``num_ops`` random operations at ``magnitude`` (0..30)."""

    name: ClassVar[str] = "randaugment"
    num_ops: int = 2
    magnitude: int = 9

    def online(self) -> BatchTransform:
        return SeededPerImage(v2.RandAugment(num_ops=self.num_ops, magnitude=self.magnitude))

    def describe(self) -> str:
        return f"online RandAugment ({self.num_ops} operations, magnitude {self.magnitude})"


@register_policy("trivialaugment")
@dataclass(frozen=True)
class TrivialAugmentOnline(Policy):
    """torchvision TrivialAugmentWide: one random operation at a random magnitude per image."""

    name: ClassVar[str] = "trivialaugment"

    def online(self) -> BatchTransform:
        return SeededPerImage(v2.TrivialAugmentWide())

    def describe(self) -> str:
        return "online TrivialAugment (wide)"
