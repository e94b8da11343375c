"""Typed generator configuration with CPU and GPU presets.

Fields left at ``None`` are filled from the preset by :meth:`GeneratorConfig.resolve`; the
resolved config (preset ``cpu`` or ``gpu``, no ``None`` left) is what a checkpoint stores.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from synthaug.config_base import StrictModel

Family = Literal["vae", "gan", "ddpm"]
SamplerName = Literal["ddpm", "ddim", "dpm++", "dpm++sde"]


class VAEConfig(StrictModel):
    """Conv encoder/decoder with reparameterisation; loss = reconstruction + beta * KL."""

    channels: tuple[int, ...] | None = Field(None, description="encoder widths, one stride-2 conv each")
    latent_dim: int | None = Field(None, ge=1)
    beta: float = Field(1.0, ge=0, description="weight of the KL term")


class GANConfig(StrictModel):
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


class DDPMConfig(StrictModel):
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
    sampler: SamplerName = "dpm++sde"
    sample_steps: int = Field(20, ge=1)
    guidance: float = Field(1.5, ge=0, description="classifier-free guidance scale (1 = none)")


class GeneratorConfig(StrictModel):
    """One generator family, its mode and its training schedule."""

    family: Family = "ddpm"
    mode: Literal["per_class", "conditional"] = "conditional"
    preset: Literal["auto", "cpu", "gpu"] = "auto"
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:N")
    image_size: int | None = Field(None, ge=8, description="side the model works at (samples return at data size)")
    steps: int | None = Field(None, ge=1, description="optimiser steps (per class in per_class mode)")
    batch_size: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    checkpoint_every: int = Field(500, ge=1)
    sample_every: int = Field(1000, ge=0, description="sample grid PNG every K steps (0: only at the end)")
    vae: VAEConfig = VAEConfig()
    gan: GANConfig = GANConfig()
    ddpm: DDPMConfig = DDPMConfig()

    @model_validator(mode="after")
    def _check(self) -> GeneratorConfig:
        if self.image_size is not None and self.image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8, got {self.image_size}")
        return self

    def resolve(self) -> GeneratorConfig:
        """Fill every ``None`` from the preset; ``auto`` becomes ``gpu`` when CUDA is present."""
        preset = self.preset
        if preset == "auto":
            preset = "gpu" if self.device != "cpu" and torch.cuda.is_available() else "cpu"
        table = PRESETS[preset]
        raw = self.model_dump()
        raw["preset"] = preset
        for key in ("image_size", "steps", "batch_size", "lr"):
            if raw[key] is None:
                raw[key] = table[self.family][key]
        for section in ("vae", "gan", "ddpm"):
            for key, value in table[section].items():
                if key in raw[section] and raw[section][key] is None:
                    raw[section][key] = value
        return GeneratorConfig.model_validate(raw)


# Per preset: the training schedule of each family and the network sizes of each section.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "cpu": {
        "vae": {
            "image_size": 64,
            "steps": 3000,
            "batch_size": 64,
            "lr": 1e-3,
            "channels": (32, 64, 128),
            "latent_dim": 64,
        },
        "gan": {"image_size": 64, "steps": 4000, "batch_size": 64, "lr": 2e-4, "channels": (32, 64, 128)},
        "ddpm": {
            "image_size": 64,
            "steps": 4000,
            "batch_size": 32,
            "lr": 2e-4,
            "block_out_channels": (32, 64, 64),
            "layers_per_block": 1,
            "warmup_steps": 200,
        },
    },
    "gpu": {
        "vae": {
            "image_size": 128,
            "steps": 10000,
            "batch_size": 128,
            "lr": 1e-3,
            "channels": (64, 128, 256, 512),
            "latent_dim": 128,
        },
        "gan": {"image_size": 128, "steps": 20000, "batch_size": 64, "lr": 2e-4, "channels": (64, 128, 256, 512)},
        "ddpm": {
            "image_size": 128,
            "steps": 30000,
            "batch_size": 64,
            "lr": 1e-4,
            "block_out_channels": (64, 128, 256, 256),
            "layers_per_block": 2,
            "warmup_steps": 500,
        },
    },
}
