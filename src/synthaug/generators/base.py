"""Generator interface and what every family shares: fitting per class or
conditionally, save/load from the checkpoint's own config, and explicit sampling randomness.

Each family writes only its networks, one optimisation step (a :class:`Trainer`) and how to
draw images; the loop around the step (checkpoints, loss CSV, grids, guards) is ``training.py``.
Families are registered by their config class (``synthaug.config.generators.FAMILIES``), which
names the implementing class; :func:`generator_class` imports it on first use.
"""

from __future__ import annotations

import hashlib
import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor, nn

from synthaug.config.generators import FAMILIES, ConfigT, GeneratorConfig, parse_generator, upgrade_generator_dict
from synthaug.data.imageset import ImageSet, to_float, to_uint8
from synthaug.device import pick_device
from synthaug.generators.training import Trainer, train_loop
from synthaug.io import save_torch, write_json
from synthaug.rundir import GENERATOR

RngLike = torch.Generator | int | Sequence[torch.Generator]
GeneratorT = TypeVar("GeneratorT", bound="Generator")


def generator_class(family: str) -> type[Generator]:
    """The implementing class of a registered family (imported on first use)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown generator family {family!r}; registered: {sorted(FAMILIES)}")
    module, _, name = FAMILIES[family].implementation.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        raise TypeError(f"family {family!r}: {FAMILIES[family].implementation} is not a Generator subclass")
    return cls


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers, e.g. (seed, class_id, k); stable across runs and machines."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def as_rng(rng: RngLike) -> torch.Generator | list[torch.Generator]:
    """Normalise an int seed, a generator or a per-image list of generators."""
    if isinstance(rng, int):
        return torch.Generator().manual_seed(rng)
    if isinstance(rng, torch.Generator):
        return rng
    return list(rng)


def noise(shape: tuple[int, ...], rng: torch.Generator | list[torch.Generator], device: torch.device) -> Tensor:
    """Standard normal noise; a list of generators seeds each batch row on its own."""
    return randn_tensor(shape, generator=rng, device=device, dtype=torch.float32)


def resize(x: Tensor, size: int) -> Tensor:
    """(N, C, h, w) -> (N, C, size, size), antialiased; identity when already that size."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def file_hash(path: str | Path) -> str:
    """Short sha256 of a file (16 hex digits): recorded next to every synthetic image."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class SampleOptions:
    """Sampler settings (diffusion only; None for families that have none)."""

    sampler: str | None = None
    steps: int | None = None
    guidance: float | None = None


class Generator(ABC):
    """A trained generator: one network for all classes (conditional) or one per class."""

    def __init__(self, cfg: GeneratorConfig, class_names: Sequence[str], data_size: int, nets: dict[str, nn.Module]):
        self.cfg = cfg
        self.class_names = tuple(class_names)
        self.data_size = int(data_size)
        self.device = pick_device(cfg.device)
        self.nets = {k: net.to(self.device).eval() for k, net in nets.items()}
        self.checkpoint_hash: str | None = None

    @property
    def family(self) -> str:
        return self.cfg.family

    # --- what a family provides -------------------------------------------------------------
    @classmethod
    @abstractmethod
    def build_net(cls, cfg: GeneratorConfig, num_classes: int | None) -> nn.Module:
        """The sampling network; ``num_classes`` is None for a per-class model."""

    @classmethod
    @abstractmethod
    def make_trainer(cls, cfg: GeneratorConfig, num_classes: int | None, device: torch.device) -> Trainer:
        """Networks, optimisers and schedules for one model."""

    @abstractmethod
    def generate(self, net: nn.Module, labels: Tensor | None, n: int, rng: Any, opts: SampleOptions) -> Tensor:
        """(n, 1, S, S) float images in [-1, 1] at the model resolution S."""

    def options(self, sampler: str | None, steps: int | None, guidance: float | None) -> SampleOptions:
        """Resolved sampler settings; families without a sampler record none."""
        return SampleOptions()

    def vary(
        self, net: nn.Module, labels: Tensor | None, x0: Tensor, strength: float, rng: Any, opts: SampleOptions
    ) -> Tensor:
        """Variations (N, 1, S, S) in [-1, 1] of real images ``x0`` at model resolution, ``strength`` in
        [0, 1]; only families whose config declares ``variations`` implement it."""
        raise NotImplementedError(f"family '{self.family}' cannot make variations of real images")

    def preview_options(self) -> SampleOptions:
        """Sampler settings of the sample grids drawn during training (cheap ones)."""
        return self.options(None, None, None)

    def provenance(self, class_id: int) -> dict[str, Any]:
        """What a bank records about where an image of ``class_id`` came from beyond the checkpoint
        (a pretrained model's id, revision, pipeline and prompt); see ``bank.PROVENANCE``."""
        return {}

    def uses_strength(self) -> bool:
        """Whether its variations depend on the strength (recorded in the bank only then)."""
        return True

    # --- shared behaviour ---------------------------------------------------------------------
    @property
    def conditional(self) -> bool:
        return self.cfg.mode == "conditional"

    def net_for(self, class_id: int, n: int) -> tuple[nn.Module, Tensor | None]:
        """The network that draws ``class_id`` and the labels to give it (None per class)."""
        if not 0 <= class_id < len(self.class_names):
            raise ValueError(f"class_id {class_id} outside 0..{len(self.class_names) - 1} ({self.class_names})")
        if self.conditional:
            return self.nets["all"], torch.full((n,), class_id, dtype=torch.long, device=self.device)
        return self.nets[str(class_id)], None

    @torch.no_grad()
    def sample(
        self,
        class_id: int,
        n: int,
        rng: RngLike,
        sampler: str | None = None,
        steps: int | None = None,
        guidance: float | None = None,
    ) -> np.ndarray:
        """``n`` uint8 images (n, H, W) of ``class_id`` at the dataset resolution."""
        net, labels = self.net_for(class_id, n)
        x = self.generate(net, labels, n, as_rng(rng), self.options(sampler, steps, guidance))
        return to_uint8(resize(x.float(), self.data_size))

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint (config + weights) atomically and record its hash."""
        state = {
            "family": self.family,
            "config": self.cfg.model_dump(mode="json"),
            "class_names": list(self.class_names),
            "data_size": self.data_size,
            "nets": {k: net.state_dict() for k, net in self.nets.items()},
        }
        save_torch(path, state)
        self.checkpoint_hash = file_hash(path)
        return Path(path)

    @classmethod
    def fit(
        cls: type[GeneratorT],
        train_data: ImageSet,
        cfg: GeneratorConfig,
        run_dir: str | Path,
        seed: int = 0,
        resume: bool = False,
        unlabelled: ImageSet | None = None,
        start: Generator | None = None,
    ) -> GeneratorT:
        """Train on ``train_data`` into ``run_dir``; ``resume`` continues from its checkpoints.

        ``unlabelled``: more images without labels; families with a null class (``cfg.unlabelled``,
        conditional mode) learn them as that class, the others ignore them. ``start``: weights to
        fine-tune from (a pool-pretrained generator of the same family, conditional mode only).
        """
        pool = usable_unlabelled(cfg, unlabelled)
        cfg = start_fit(train_data, cfg, run_dir, seed, unlabelled_images=len(pool))
        run_dir, device = Path(run_dir), pick_device(cfg.device)
        names, k = train_data.class_names, train_data.num_classes
        x, y = with_null_class(train_data, pool, int(cfg.image_size or train_data.size), device)
        nets: dict[str, nn.Module] = {}
        if cfg.mode == "conditional":
            init = None if start is None else start.nets["all"]
            nets["all"] = _fit_one(cls, cfg, names, (x, y), k, run_dir, seed, resume, init=init)
        else:
            for c, name in enumerate(names):
                if not bool((y == c).any()):
                    raise ValueError(f"per_class mode needs training images of every class; '{name}' has none")
                data = (x[y == c], None)
                nets[str(c)] = _fit_one(
                    cls, cfg, names, data, None, run_dir / f"class_{c}", derive_seed(seed, c), resume, only=c
                )
        gen = cls(cfg, names, train_data.size, nets)
        gen.save(run_dir / GENERATOR)
        return gen


def usable_unlabelled(cfg: GeneratorConfig, unlabelled: ImageSet | None) -> np.ndarray:
    """The unlabelled images (N, H, W) the family learns from: none unless it has a null class."""
    if unlabelled is None or not len(unlabelled) or not (cfg.unlabelled and cfg.mode == "conditional"):
        return np.zeros((0, 1, 1), np.uint8)
    return unlabelled.images


def with_null_class(
    train_data: ImageSet, unlabelled: np.ndarray, size: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Images (N, 1, S, S) in [-1, 1] and labels (N,): the labelled ones, then the unlabelled ones
    labelled with the null class (index ``num_classes``, the class guidance drops labels to)."""
    x = resize(to_float(train_data.images), size)
    y = torch.as_tensor(train_data.labels, dtype=torch.long)
    if len(unlabelled):
        x = torch.cat([x, resize(to_float(unlabelled), size)])
        y = torch.cat([y, torch.full((len(unlabelled),), train_data.num_classes, dtype=torch.long)])
    return x.to(device), y.to(device)


def start_fit(train_data: ImageSet, cfg: ConfigT, run_dir: str | Path, seed: int, **extra: Any) -> ConfigT:
    """The resolved config a fit records (named after its family: the study's name for it is not
    one of its settings), written with the seed, classes and data size to ``RUN/config.json``."""
    cfg = cfg.resolve().model_copy(update={"name": cfg.family})
    record = {"config": cfg.model_dump(mode="json"), "seed": seed, "class_names": list(train_data.class_names),
              "data_size": train_data.size}  # fmt: skip
    write_json(Path(run_dir) / "config.json", record | extra)
    return cfg


def _fit_one(
    cls: type[Generator],
    cfg: GeneratorConfig,
    names: Sequence[str],
    data: tuple[Tensor, Tensor | None],
    num_classes: int | None,
    work_dir: Path,
    seed: int,
    resume: bool,
    only: int | None = None,
    init: nn.Module | None = None,
) -> nn.Module:
    """Train one model (all classes, or class ``only``) and return its sampling network; ``init``:
    weights to start from (a trainer with ``init_from``)."""
    with torch.random.fork_rng(devices=[]):  # weight init from the run's seed, global RNG untouched
        torch.manual_seed(seed)
        trainer = cls.make_trainer(cfg, num_classes, pick_device(cfg.device))
    if init is not None:
        start_from(trainer, init)

    def grid() -> Tensor:  # (K*4, 1, S, S): four samples of each class the model draws
        key = "all" if only is None else str(only)
        preview = cls(cfg, names, cfg.image_size or 0, {key: trainer.export()})
        classes = range(len(names)) if only is None else [only]
        with torch.no_grad():
            rows = [
                preview.generate(
                    *preview.net_for(c, 4),
                    4,
                    torch.Generator().manual_seed(c),
                    preview.preview_options(),
                )
                for c in classes
            ]
        return torch.cat(rows).float().cpu()

    train_loop(trainer, data[0], data[1], cfg, work_dir, seed, resume, grid)
    return trainer.export()


def start_from(trainer: Trainer, net: nn.Module) -> None:
    """Load a pretrained sampling network into a trainer (its training and averaged weights)."""
    init_from = getattr(trainer, "init_from", None)
    if init_from is None:
        raise ValueError(f"{type(trainer).__name__} cannot start from pretrained weights")
    init_from(net)


def load_generator(path: str | Path, device: str | None = None) -> Generator:
    """Rebuild a generator from its checkpoint alone (config, classes and weights)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    cfg = parse_generator(upgrade_generator_dict(state["config"]))
    if device is not None:
        cfg = cfg.model_copy(update={"device": device})
    try:
        cls = generator_class(state["family"])
    except ValueError as exc:
        raise ValueError(f"checkpoint {path}: {exc}") from exc
    k = len(state["class_names"])
    nets = {}
    for key, sd in state["nets"].items():
        net = cls.build_net(cfg, k if key == "all" else None)
        net.load_state_dict(sd)
        nets[key] = net
    try:
        gen = cls(cfg, state["class_names"], state["data_size"], nets)
    except ValueError as exc:
        raise ValueError(f"checkpoint {path}: {exc}") from exc
    gen.checkpoint_hash = file_hash(path)
    return gen
