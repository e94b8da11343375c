"""Class-conditional DDPM: a diffusers ``UNet2DModel`` trained to predict the added noise,
with classifier-free guidance (label dropout to a null class), EMA weights, AdamW with cosine
warm-up, gradient clipping and bf16 autocast (CUDA; CPU with ``cpu_bf16``). Sampling procedures are in samplers.py.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from typing import Any, cast

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from diffusers.optimization import get_cosine_schedule_with_warmup
from torch import Tensor, nn

from synthaug.config.generators import DDPMConfig, DDPMOptions, GeneratorConfig, LDMOptions
from synthaug.device import require_native_cpu_bf16
from synthaug.generators.base import Generator, SampleOptions, noise
from synthaug.generators.samplers import DEFAULT_STEPS, SAMPLERS, EpsFn, denoise, make_scheduler, train_scheduler
from synthaug.generators.training import EMA


def build_unet(cfg: GeneratorConfig, num_classes: int | None) -> nn.Module:
    """One-channel UNet at the image size (see :func:`unet_for`)."""
    assert isinstance(cfg, DDPMConfig)
    assert cfg.image_size, "resolve() the config first"
    return unet_for(cfg.ddpm, cfg.image_size, 1, num_classes)


def unet_for(d: DDPMOptions, sample_size: int, channels: int, num_classes: int | None) -> nn.Module:
    """A UNet on (channels, sample_size, sample_size) inputs (pixels, or an autoencoder's latents);
    attention at the lowest resolution; ``num_classes + 1`` embeddings when conditional (the last
    one is the null class of classifier-free guidance)."""
    assert d.block_out_channels and d.layers_per_block, "resolve() the config first"
    ch, n = d.block_out_channels, len(d.block_out_channels)
    attn = d.attention
    unet = UNet2DModel(
        sample_size=sample_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=ch,
        layers_per_block=d.layers_per_block,
        down_block_types=("DownBlock2D",) * (n - 1) + ("AttnDownBlock2D" if attn else "DownBlock2D",),
        up_block_types=("AttnUpBlock2D" if attn else "UpBlock2D",) + ("UpBlock2D",) * (n - 1),
        add_attention=attn,
        norm_num_groups=min(32, math.gcd(*ch)),
        attention_head_dim=min(8, min(ch)),
        num_class_embeds=num_classes + 1 if num_classes else None,
    )
    return cast(nn.Module, unet)


def autocast(device: torch.device, d: DDPMOptions) -> AbstractContextManager[Any]:
    """bf16 autocast where the options ask for it: ``mixed_precision`` on CUDA, ``cpu_bf16`` on a native-bf16 CPU."""
    if device.type == "cuda" and d.mixed_precision:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and d.cpu_bf16:
        require_native_cpu_bf16("ldm.cpu_bf16" if isinstance(d, LDMOptions) else "ddpm.cpu_bf16")
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


class DDPMTrainer:
    """Simple loss ||eps - eps_theta(x_t, t, y)||^2 (Ho et al. 2020, Algorithm 1)."""

    def __init__(
        self,
        cfg: GeneratorConfig,
        num_classes: int | None,
        device: torch.device,
        options: DDPMOptions | None = None,
        unet: nn.Module | None = None,
    ):
        """``options`` / ``unet``: the UNet's settings and network when they are not the DDPM family's
        own (the latent diffusion family trains the same objective on latents)."""
        if options is None:
            assert isinstance(cfg, DDPMConfig)
            options = cfg.ddpm
        d = options
        self.unet = (unet if unet is not None else build_unet(cfg, num_classes)).to(device)
        self.ema = EMA(self.unet, d.ema_decay)
        self.opt = torch.optim.AdamW(self.unet.parameters(), lr=cfg.lr or 1e-4, weight_decay=d.weight_decay)
        steps = cfg.steps or 1
        warmup = min(d.warmup_steps or 0, steps // 10)  # a preset's warm-up never eats a short run
        self.lr_sched = get_cosine_schedule_with_warmup(self.opt, warmup, steps)
        self.schedule: Any = train_scheduler(d.num_train_timesteps, d.beta_schedule)
        self.null, self.p_drop, self.clip = num_classes, d.cfg_dropout, d.grad_clip
        self.options = d
        self.nets: dict[str, nn.Module] = {"unet": self.unet}

    def step(self, x: Tensor, y: Tensor | None, gen: torch.Generator) -> dict[str, float]:
        self.unet.train()
        b, dev = len(x), x.device
        eps = torch.randn(x.shape, generator=gen, device=dev)  # (B, 1, S, S)
        t = torch.randint(0, self.schedule.config.num_train_timesteps, (b,), generator=gen, device=dev)  # (B,)
        x_t = self.schedule.add_noise(x, eps, t)  # sqrt(abar_t) x0 + sqrt(1 - abar_t) eps  (eq. 4)
        if y is not None and self.null is not None:
            drop = torch.rand(b, generator=gen, device=dev) < self.p_drop
            y = torch.where(drop, torch.full_like(y, self.null), y)
        with autocast(dev, self.options):
            pred = self.unet(x_t, t, class_labels=y).sample
        loss = F.mse_loss(pred.float(), eps)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), self.clip)
        self.opt.step()
        self.lr_sched.step()
        self.ema.update(self.unet)
        return {"loss": loss.item(), "lr": float(self.lr_sched.get_last_lr()[0])}

    def init_from(self, net: nn.Module) -> None:
        """Start from pretrained weights (the pool's EMA UNet): both the trained and the averaged copy."""
        self.unet.load_state_dict(net.state_dict())
        self.ema.model.load_state_dict(net.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {
            "unet": self.unet.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "lr_sched": self.lr_sched.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.unet.load_state_dict(state["unet"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.lr_sched.load_state_dict(state["lr_sched"])

    def export(self) -> nn.Module:
        return self.ema.model


class DDPMGenerator(Generator):
    """Draws images with a chosen sampler (ddpm / ddim / dpm++) and guidance scale."""

    cfg: DDPMConfig

    @property
    def diffusion(self) -> DDPMOptions:
        """The diffusion settings (sampler, guidance, schedule) of this family's config."""
        return self.cfg.ddpm

    @classmethod
    def build_net(cls, cfg: GeneratorConfig, num_classes: int | None) -> nn.Module:
        return build_unet(cfg, num_classes)

    @classmethod
    def make_trainer(cls, cfg: GeneratorConfig, num_classes: int | None, device: torch.device) -> DDPMTrainer:
        return DDPMTrainer(cfg, num_classes, device)

    def options(self, sampler: str | None, steps: int | None, guidance: float | None) -> SampleOptions:
        d = self.diffusion
        name = sampler or d.sampler
        if name not in SAMPLERS:
            raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
        steps = steps or (d.sample_steps if name == d.sampler else DEFAULT_STEPS[name])
        g = (d.guidance if guidance is None else float(guidance)) if self.conditional else None
        return SampleOptions(sampler=name, steps=int(steps), guidance=g)

    def preview_options(self) -> SampleOptions:
        return self.options(None, min(self.diffusion.sample_steps, 25), None)

    def eps_fn(self, net: nn.Module, labels: Tensor | None, guidance: float | None) -> EpsFn:
        """Noise prediction with classifier-free guidance: eps_u + w (eps_c - eps_u) (Ho & Salimans eq. 6)."""
        null = len(self.class_names)
        d = self.diffusion

        def eps(x: Tensor, t: Tensor) -> Tensor:
            with autocast(x.device, d):
                if labels is None or guidance is None or guidance == 1.0:
                    return net(x, t, class_labels=labels).sample.float()
                both = net(torch.cat([x, x]), t, class_labels=torch.cat([labels, torch.full_like(labels, null)]))
                cond, uncond = both.sample.float().chunk(2)  # (N, 1, S, S) each
                return uncond + guidance * (cond - uncond)

        return eps

    def scheduler(self, name: str) -> Any:
        d = self.diffusion
        train: Any = train_scheduler(d.num_train_timesteps, d.beta_schedule)
        return make_scheduler(name, train.config)

    def vary(
        self, net: nn.Module, labels: Tensor | None, x0: Tensor, strength: float, rng: Any, opts: SampleOptions
    ) -> Tensor:
        """SDEdit: noise ``x0`` to timestep strength·T, then denoise (Meng et al. 2022)."""
        assert opts.sampler and opts.steps
        eps = self.eps_fn(net, labels, opts.guidance)
        start_noise = noise(tuple(x0.shape), rng, self.device)
        return denoise(
            eps, self.scheduler(opts.sampler), x0, opts.steps, rng, strength=strength, start_noise=start_noise
        )

    def generate(self, net: nn.Module, labels: Tensor | None, n: int, rng: Any, opts: SampleOptions) -> Tensor:
        assert opts.sampler and opts.steps and self.cfg.image_size
        x = noise((n, 1, self.cfg.image_size, self.cfg.image_size), rng, self.device)  # x_T ~ N(0, I)
        return denoise(self.eps_fn(net, labels, opts.guidance), self.scheduler(opts.sampler), x, opts.steps, rng)
