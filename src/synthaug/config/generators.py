"""Generator configuration: a tagged union on ``family``, one config class per family.

Each family's class declares what the rest of synthaug needs to know about it without loading
it: its options section (``vae:``, ``gan:``, ``ddpm:``), its CPU and GPU presets, whether it can
make variations of real images, its objective in words, and where its implementation lives
(``implementation = "module:Class"``, imported only when a generator is trained or loaded).
Registering the class with :func:`register_family` puts the family in the CLI help, the config
schema and the test that runs every family.

Fields left at ``None`` are filled from the preset by :meth:`GeneratorConfig.resolve`; the
resolved config (preset ``cpu`` or ``gpu``, no ``None`` left) is what a checkpoint stores.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar, Union

from pydantic import Field, TypeAdapter, field_validator, model_validator

from synthaug.config.base import StrictModel

SamplerName = Literal["ddpm", "ddim", "dpm++", "dpm++sde"]
SAMPLER_NAMES: tuple[str, ...] = ("ddpm", "ddim", "dpm++", "dpm++sde")
CommonKey = Literal["image_size", "steps", "batch_size", "lr"]


class GeneratorConfig(StrictModel):
    """What every family shares: its name in the study, mode, preset, device and training schedule."""

    family: str
    name: str = Field("", description="what policies call it (gen=NAME); defaults to the family")
    mode: Literal["per_class", "conditional"] = "conditional"
    preset: Literal["auto", "cpu", "gpu"] = "auto"
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:N")
    image_size: int | None = Field(None, ge=8, description="side the model works at (samples return at data size)")
    steps: int | None = Field(None, ge=1, description="optimiser steps (per class in per_class mode)")
    batch_size: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    checkpoint_every: int = Field(500, ge=1)
    sample_every: int = Field(1000, ge=0, description="sample grid PNG every K steps (0: only at the end)")
    pool_steps: int = Field(
        0,
        ge=0,
        description="with study.generator_pool unlabelled_rest: first train once per study on the shared unlabelled "
        "pool (every training image no cell validates on) for this many steps, then fine-tune per cell for `steps` "
        "on its labelled images (0: every cell trains from scratch); families with pool_pretrain",
    )

    # What each family declares (class attributes, not config keys).
    section: ClassVar[str] = ""  # name of the family's own options field
    implementation: ClassVar[str] = ""  # "module:Class" of its synthaug.generators.base.Generator
    presets: ClassVar[dict[str, dict[str, Any]]] = {}  # preset -> common keys and the section's keys
    variations: ClassVar[bool] = False  # can make variations (img2img) of real images
    external: ClassVar[bool] = False  # images made outside the study (may have seen any image, test ones too)
    unlabelled: ClassVar[bool] = False  # can learn from unlabelled images too (a null class), in conditional mode
    pool_pretrain: ClassVar[bool] = False  # can start a fit from one trained on unlabelled images alone (pool_steps)

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, value: Any) -> Any:
        if isinstance(value, dict) and not value.get("name"):
            value = {**value, "name": value.get("family") or cls.model_fields["family"].default}
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"generator name {value!r}: use letters, digits, '-' and '_' only")
        return value

    @model_validator(mode="after")
    def _pool_steps(self) -> GeneratorConfig:
        if self.pool_steps and not (self.pool_pretrain and self.mode == "conditional"):
            able = [f for f, c in FAMILIES.items() if c.pool_pretrain]
            raise ValueError(
                f"generator {self.name!r}: pool_steps needs a conditional model of a family that pretrains on "
                f"unlabelled images ({able}); family {self.family!r}, mode {self.mode!r}"
            )
        return self

    @field_validator("image_size")
    @classmethod
    def _size(cls, value: int | None) -> int | None:
        if value is not None and value % 8:
            raise ValueError(f"image_size must be a multiple of 8, got {value}")
        return value

    def resolve(self: ConfigT) -> ConfigT:
        """Fill every ``None`` from the preset; ``auto`` becomes ``gpu`` when CUDA is present."""
        preset = self.preset
        if preset == "auto":
            import torch  # only when a generator is about to be trained

            preset = "gpu" if self.device != "cpu" and torch.cuda.is_available() else "cpu"
        table = self.presets[preset]
        raw = self.model_dump()
        raw["preset"] = preset
        for key, value in table.items():
            if key == self.section:
                raw[key] = {k: (value[k] if v is None and k in value else v) for k, v in raw[key].items()}
            elif raw.get(key) is None:
                raw[key] = value
        return type(self).model_validate(raw)

    def objective(self) -> tuple[str, str]:
        """The training loss and the optimiser in words (the report's table of approaches)."""
        raise NotImplementedError

    def draws(self) -> bool:
        """Whether it makes images without a real source (what the synthetic / balance policies ask)."""
        return True


ConfigT = TypeVar("ConfigT", bound=GeneratorConfig)
FAMILIES: dict[str, type[GeneratorConfig]] = {}


def register_family(cls: type[ConfigT]) -> type[ConfigT]:
    """Class decorator: make a family's config (and so the family) known under its ``family`` literal."""
    name = cls.model_fields["family"].default
    if not name or name in FAMILIES:
        raise ValueError(f"generator family {name!r} is unnamed or already registered")
    if not cls.implementation or not cls.presets:
        raise ValueError(f"generator family {name!r} must declare implementation and presets")
    FAMILIES[name] = cls
    return cls


# ---------------------------------------------------------------- the built-in families


class VAEOptions(StrictModel):
    """Conv encoder/decoder with reparameterisation; loss = reconstruction + beta * KL."""

    channels: tuple[int, ...] | None = Field(None, description="encoder widths, one stride-2 conv each")
    latent_dim: int | None = Field(None, ge=1)
    beta: float = Field(1.0, ge=0, description="weight of the KL term")


@register_family
class VAEConfig(GeneratorConfig):
    family: Literal["vae"] = "vae"
    vae: VAEOptions = VAEOptions()

    section: ClassVar[str] = "vae"
    implementation: ClassVar[str] = "synthaug.generators.vae:VAEGenerator"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "cpu": {"image_size": 64, "steps": 3000, "batch_size": 64, "lr": 1e-3,
                "vae": {"channels": (32, 64, 128), "latent_dim": 64}},
        "gpu": {"image_size": 128, "steps": 10000, "batch_size": 128, "lr": 1e-3,
                "vae": {"channels": (64, 128, 256, 512), "latent_dim": 128}},
    }  # fmt: skip

    def objective(self) -> tuple[str, str]:
        return f"reconstruction (squared error) + β·KL, β = {self.vae.beta:g}", "Adam"


class GANOptions(StrictModel):
    """DCGAN-style generator and discriminator."""

    channels: tuple[int, ...] | None = Field(None, description="discriminator widths (generator mirrors them)")
    z_dim: int = Field(64, ge=1)
    loss: Literal["lsgan", "hinge"] = "hinge"
    spectral_norm: bool = Field(True, description="spectral norm in the discriminator (always on for hinge)")
    conditioning: Literal["projection", "embedding"] = "projection"
    betas: tuple[float, float] = (0.5, 0.999)
    d_steps: int = Field(1, ge=1, description="discriminator updates per generator update")
    mode_seeking: float = Field(
        0.1, ge=0, description="weight of the mode-seeking term (conditional G ignoring z; 0 = off)"
    )
    minibatch_std: bool = Field(True, description="minibatch-std feature in the discriminator (against collapse)")
    diffaugment: tuple[Literal["color", "translation", "cutout"], ...] = Field(
        ("color", "translation", "cutout"), description="DiffAugment operations on every image D sees ([] = off)"
    )


@register_family
class GANConfig(GeneratorConfig):
    family: Literal["gan"] = "gan"
    gan: GANOptions = GANOptions()

    section: ClassVar[str] = "gan"
    implementation: ClassVar[str] = "synthaug.generators.gan:GANImageGenerator"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "cpu": {"image_size": 64, "steps": 4000, "batch_size": 64, "lr": 2e-4, "gan": {"channels": (32, 64, 128)}},
        "gpu": {"image_size": 128, "steps": 20000, "batch_size": 64, "lr": 2e-4,
                "gan": {"channels": (64, 128, 256, 512)}},
    }  # fmt: skip

    def objective(self) -> tuple[str, str]:
        g = self.gan
        loss = "least squares (MSE)" if g.loss == "lsgan" else "hinge"
        if g.spectral_norm or g.loss == "hinge":
            loss += ", spectral norm in D"
        if g.mode_seeking:
            loss += f", mode seeking {g.mode_seeking:g}"
        if g.diffaugment:
            loss += ", DiffAugment"
        return f"adversarial, {loss}", f"Adam (β = {g.betas[0]:g}, {g.betas[1]:g}), G and D alternating"


class DDPMOptions(StrictModel):
    """Class-conditional UNet2DModel trained with the DDPM objective."""

    block_out_channels: tuple[int, ...] | None = None
    layers_per_block: int | None = Field(None, ge=1)
    attention: bool = Field(True, description="self-attention at the lowest resolution")
    num_train_timesteps: int = Field(1000, ge=2)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    cfg_dropout: float = Field(0.1, ge=0, lt=1, description="label dropout for classifier-free guidance")
    ema_decay: float = Field(0.999, ge=0, lt=1)
    warmup_steps: int | None = Field(None, ge=0, description="linear LR warm-up (at most a tenth of the steps)")
    weight_decay: float = Field(1e-2, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    mixed_precision: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU)")
    cpu_bf16: bool = Field(
        False,
        description="bf16 autocast on CPU too: faster on cores with AVX512-BF16 / AMX, refused on others (there "
        "emulated bf16 is many times slower); see docs/BENCHMARKS.md",
    )
    sampler: SamplerName = "dpm++sde"
    sample_steps: int = Field(20, ge=1)
    guidance: float = Field(1.5, ge=0, description="classifier-free guidance scale (1 = none)")


@register_family
class DDPMConfig(GeneratorConfig):
    family: Literal["ddpm"] = "ddpm"
    ddpm: DDPMOptions = DDPMOptions()

    section: ClassVar[str] = "ddpm"
    implementation: ClassVar[str] = "synthaug.generators.ddpm:DDPMGenerator"
    variations: ClassVar[bool] = True
    unlabelled: ClassVar[bool] = True
    pool_pretrain: ClassVar[bool] = True
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "cpu": {"image_size": 64, "steps": 4000, "batch_size": 32, "lr": 2e-4,
                "ddpm": {"block_out_channels": (32, 64, 64), "layers_per_block": 1, "warmup_steps": 200}},
        "gpu": {"image_size": 128, "steps": 30000, "batch_size": 64, "lr": 1e-4,
                "ddpm": {"block_out_channels": (64, 128, 256, 256), "layers_per_block": 2, "warmup_steps": 500}},
    }  # fmt: skip

    def objective(self) -> tuple[str, str]:
        d = self.ddpm
        loss = f"ε-prediction MSE, {d.num_train_timesteps}-step {d.beta_schedule} schedule"
        if self.mode == "conditional" and d.cfg_dropout:
            loss += f", label dropout {d.cfg_dropout:g} (guidance)"
        return loss, f"AdamW (weight decay {d.weight_decay:g}), cosine LR with warm-up, EMA {d.ema_decay:g}"


class LDMOptions(DDPMOptions):
    """Latent diffusion: a KL-regularised autoencoder (diffusers ``AutoencoderKL``) compresses each
    image; a class-conditional UNet (the DDPM options above) denoises its latents."""

    ae_channels: tuple[int, ...] | None = Field(
        None, description="autoencoder widths; the latent is 2^(len-1) times smaller per side"
    )
    ae_layers_per_block: int = Field(1, ge=1)
    latent_channels: int = Field(4, ge=1)
    ae_steps: int | None = Field(None, ge=1, description="autoencoder optimiser steps (phase 1)")
    ae_lr: float = Field(1e-3, gt=0)
    kl_weight: float = Field(1e-6, ge=0, description="weight of the KL term (small: the latent keeps detail)")
    reconstruction: Literal["l1", "l2"] = "l1"

    @property
    def latent_factor(self) -> int:
        """How many times smaller the latent is per side than the image (one per down block but the last)."""
        assert self.ae_channels, "resolve() the config first"
        return int(2 ** (len(self.ae_channels) - 1))


@register_family
class LDMConfig(GeneratorConfig):
    family: Literal["ldm"] = "ldm"
    ldm: LDMOptions = LDMOptions()

    section: ClassVar[str] = "ldm"
    implementation: ClassVar[str] = "synthaug.generators.ldm:LDMGenerator"
    variations: ClassVar[bool] = True
    unlabelled: ClassVar[bool] = True
    pool_pretrain: ClassVar[bool] = True
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # Sized by the measured throughput (docs/BENCHMARKS.md): about 50 core-minutes in fp32 at 64 px.
        "cpu": {"image_size": 64, "steps": 4000, "batch_size": 32, "lr": 2e-4,
                "ldm": {"ae_channels": (32, 64, 64), "ae_steps": 1000, "block_out_channels": (64, 128, 128),
                        "layers_per_block": 1, "warmup_steps": 200}},
        "gpu": {"image_size": 128, "steps": 40000, "batch_size": 64, "lr": 1e-4,
                "ldm": {"ae_channels": (64, 128, 256, 256), "ae_steps": 20000,
                        "block_out_channels": (128, 256, 256), "layers_per_block": 2, "warmup_steps": 500}},
    }  # fmt: skip

    @model_validator(mode="after")
    def _conditional(self) -> LDMConfig:
        if self.mode != "conditional":
            raise ValueError("family ldm trains one class-conditional model: set mode: conditional")
        return self

    def objective(self) -> tuple[str, str]:
        d = self.ldm
        loss = (
            f"autoencoder: {d.reconstruction.upper()} reconstruction + {d.kl_weight:g}·KL; then ε-prediction MSE on "
            f"its latents, {d.num_train_timesteps}-step {d.beta_schedule} schedule"
        )
        if d.cfg_dropout:
            loss += f", label dropout {d.cfg_dropout:g} (guidance)"
        return loss, f"AdamW (autoencoder lr {d.ae_lr:g}; UNet: cosine LR with warm-up, EMA {d.ema_decay:g})"


# Families that are not trained from scratch (bring-your-own images, pretrained pipelines) live in
# their own module; importing it here registers them before the union below is built.
import synthaug.config.external  # noqa: E402, F401

# ---------------------------------------------------------------- the union and its parser

DEFAULT_FAMILY = "ddpm"


def with_family(value: Any) -> Any:
    """A generator entry without ``family`` is a DDPM (the historical default); unknown families are named."""
    if not isinstance(value, dict):
        return value
    family = value.get("family", DEFAULT_FAMILY)
    if family not in FAMILIES:
        close = difflib.get_close_matches(str(family), list(FAMILIES), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown generator family {family!r}; registered: {list(FAMILIES)}.{hint}")
    return {**value, "family": family}


def _union() -> Any:
    members = tuple(FAMILIES.values())
    return Annotated[Union[members], Field(discriminator="family")]  # noqa: UP007  (built at run time)


if TYPE_CHECKING:  # for type checkers every member is a GeneratorConfig
    AnyGeneratorConfig = GeneratorConfig
else:  # for pydantic: validate and dump by the family's own class, schema from the registry
    AnyGeneratorConfig = Annotated[_union(), Field(description="a generator; `family` selects its options")]
_ADAPTER: TypeAdapter[GeneratorConfig] = TypeAdapter(AnyGeneratorConfig)


def parse_generator(value: Any) -> GeneratorConfig:
    """Validate one generator entry (a dict, or an already built config) into its family's class."""
    if isinstance(value, GeneratorConfig):
        return value
    return _ADAPTER.validate_python(with_family(value))


def upgrade_generator_dict(raw: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's config from before the union held every family's section: keep only its own."""
    family = raw.get("family", DEFAULT_FAMILY)
    others = {f for f in FAMILIES if f != family}
    return {"name": family, **{k: v for k, v in raw.items() if k not in others}}
