"""Latent diffusion (Rombach et al. 2022, the method behind Stable Diffusion), trained from scratch
in two phases on the cell's real training images:

1. a KL-regularised autoencoder (diffusers ``AutoencoderKL``, one channel in and out) learns to
   compress each image by 2^(len(ae_channels) - 1) per side: reconstruction (L1 or L2, per pixel)
   + ``kl_weight`` · KL (summed over the latent, averaged over images);
2. the training images are encoded (posterior means), scaled to unit variance with a recorded
   scale factor, and a class-conditional ``UNet2DModel`` learns the DDPM objective on them, with
   label dropout for classifier-free guidance and EMA weights (the DDPM family's trainer).

Sampling draws latents with the study's samplers (no clipping: latents are not bounded) and
decodes them; variations encode a real image, noise its latent to the strength and denoise
(SDEdit in latent space). One checkpoint holds both networks; each phase resumes from its own
training checkpoint (``RUN/autoencoder/`` for phase 1, ``RUN/`` itself for phase 2, as for every family).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import Tensor, nn

from synthaug.config.generators import GeneratorConfig, LDMConfig, LDMOptions
from synthaug.data.imageset import ImageSet
from synthaug.device import pick_device
from synthaug.generators.base import (
    Generator,
    GeneratorT,
    SampleOptions,
    noise,
    start_fit,
    start_from,
    usable_unlabelled,
    with_null_class,
)
from synthaug.generators.ddpm import DDPMGenerator, DDPMTrainer, autocast, unet_for
from synthaug.generators.samplers import denoise, make_scheduler, train_scheduler
from synthaug.generators.training import train_loop
from synthaug.io import write_json
from synthaug.rundir import GENERATOR

AUTOENCODER = "autoencoder"


class Autoencoder(nn.Module):
    """``AutoencoderKL`` with the latent scale factor and the image size it was trained at (buffers,
    so both travel with the weights)."""

    scale: Tensor
    image_size: Tensor

    def __init__(self, d: LDMOptions, image_size: int):
        super().__init__()
        assert d.ae_channels, "resolve() the config first"
        ch, n = d.ae_channels, len(d.ae_channels)
        self.kl: Any = AutoencoderKL(
            in_channels=1,
            out_channels=1,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=ch,
            layers_per_block=d.ae_layers_per_block,
            latent_channels=d.latent_channels,
            norm_num_groups=min(32, math.gcd(*ch)),
            sample_size=image_size,
        )
        self.factor = d.latent_factor
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("image_size", torch.tensor(int(image_size)))

    def encode(self, x: Tensor) -> Tensor:
        """(N, 1, S, S) in [-1, 1] -> scaled latents (N, C, S/f, S/f), the posterior means."""
        return cast(Tensor, self.kl.encode(x).latent_dist.mean * self.scale)

    def decode(self, z: Tensor) -> Tensor:
        return cast(Tensor, self.kl.decode(z / self.scale).sample)


class AutoencoderTrainer:
    def __init__(self, d: LDMOptions, image_size: int, device: torch.device):
        self.ae = Autoencoder(d, image_size).to(device)
        self.opt = torch.optim.AdamW(self.ae.kl.parameters(), lr=d.ae_lr, weight_decay=0.0)
        self.kl_weight, self.l1 = d.kl_weight, d.reconstruction == "l1"
        self.options = d
        self.nets: dict[str, nn.Module] = {AUTOENCODER: self.ae}

    def step(self, x: Tensor, y: Tensor | None, gen: torch.Generator) -> dict[str, float]:
        self.ae.train()
        with autocast(x.device, self.options):
            post = self.ae.kl.encode(x).latent_dist
            mean, std = post.mean.float(), post.std.float()
            z = mean + std * torch.randn(mean.shape, generator=gen, device=x.device)  # reparameterised
            rec = self.ae.kl.decode(z).sample.float()  # (B, 1, S, S)
        recon = F.l1_loss(rec, x) if self.l1 else F.mse_loss(rec, x)
        kl = post.kl().float().mean()  # summed over the latent, averaged over the batch
        loss = recon + self.kl_weight * kl
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), "recon": recon.item(), "kl": kl.item()}

    def state_dict(self) -> dict[str, Any]:
        return {"ae": self.ae.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ae.load_state_dict(state["ae"])
        self.opt.load_state_dict(state["opt"])

    def export(self) -> nn.Module:
        return self.ae.eval()


@torch.no_grad()
def encode_all(ae: Autoencoder, x: Tensor, batch: int = 256) -> Tensor:
    return torch.cat([ae.encode(x[i : i + batch]) for i in range(0, len(x), batch)])


class LDMGenerator(DDPMGenerator):
    """Samples latents with the DDPM family's samplers and guidance, then decodes them."""

    cfg: LDMConfig  # type: ignore[assignment]

    def __init__(self, cfg: GeneratorConfig, class_names: Any, data_size: int, nets: dict[str, nn.Module]):
        if AUTOENCODER not in nets or "all" not in nets:
            raise ValueError(f"an ldm generator needs its autoencoder and its UNet; it has {sorted(nets)}")
        trained = int(cast(Autoencoder, nets[AUTOENCODER]).image_size)
        if trained != cfg.image_size:
            size = cfg.image_size
            raise ValueError(f"its autoencoder was trained at {trained} px, its config says image_size {size}")
        super().__init__(cfg, class_names, data_size, nets)

    @property
    def diffusion(self) -> LDMOptions:
        return self.cfg.ldm

    @property
    def autoencoder(self) -> Autoencoder:
        return cast(Autoencoder, self.nets[AUTOENCODER])

    @classmethod
    def build_net(cls, cfg: GeneratorConfig, num_classes: int | None) -> nn.Module:
        """The autoencoder for ``num_classes`` None (the checkpoint's ``autoencoder`` entry), else the UNet."""
        assert isinstance(cfg, LDMConfig) and cfg.image_size and cfg.ldm.ae_channels
        if num_classes is None:
            return Autoencoder(cfg.ldm, cfg.image_size)
        latent = cfg.image_size // cfg.ldm.latent_factor
        return unet_for(cfg.ldm, latent, cfg.ldm.latent_channels, num_classes)

    @classmethod
    def make_trainer(cls, cfg: GeneratorConfig, num_classes: int | None, device: torch.device) -> DDPMTrainer:
        assert isinstance(cfg, LDMConfig)
        unet = cls.build_net(cfg, num_classes if num_classes is not None else 0)
        return DDPMTrainer(cfg, num_classes, device, options=cfg.ldm, unet=unet)

    def scheduler(self, name: str) -> Any:
        d = self.diffusion
        return make_scheduler(name, train_scheduler(d.num_train_timesteps, d.beta_schedule).config, clip_sample=False)

    def _latent_shape(self, n: int) -> tuple[int, int, int, int]:
        assert self.cfg.image_size
        side = self.cfg.image_size // self.autoencoder.factor
        return (n, self.diffusion.latent_channels, side, side)

    def generate(self, net: nn.Module, labels: Tensor | None, n: int, rng: Any, opts: SampleOptions) -> Tensor:
        assert opts.sampler and opts.steps
        z = noise(self._latent_shape(n), rng, self.device)  # z_T ~ N(0, I)
        z0 = denoise(self.eps_fn(net, labels, opts.guidance), self.scheduler(opts.sampler), z, opts.steps, rng)
        return self.autoencoder.decode(z0).clamp(-1, 1)

    def vary(
        self, net: nn.Module, labels: Tensor | None, x0: Tensor, strength: float, rng: Any, opts: SampleOptions
    ) -> Tensor:
        """SDEdit in latent space: encode, noise to strength·T, denoise, decode (strength 0: the
        autoencoder's reconstruction of ``x0``)."""
        assert opts.sampler and opts.steps
        trained = int(self.autoencoder.image_size)
        if x0.shape[-1] != trained:
            raise ValueError(
                f"variations at {x0.shape[-1]} px, but the autoencoder was trained at {trained} px "
                f"(image_size of generator '{self.cfg.name}'); resize the sources to {trained} px"
            )
        z0 = self.autoencoder.encode(x0)
        start = noise(tuple(z0.shape), rng, self.device)
        eps = self.eps_fn(net, labels, opts.guidance)
        z = denoise(eps, self.scheduler(opts.sampler), z0, opts.steps, rng, strength=strength, start_noise=start)
        return self.autoencoder.decode(z).clamp(-1, 1)

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
        """Phase 1 (autoencoder, in ``RUN/autoencoder/``), then phase 2 (latent UNet, in ``RUN/``).
        ``unlabelled`` images join both phases: the autoencoder's, and the UNet's as the null class.
        With ``start`` (an ldm trained on the unlabelled pool) phase 1 is skipped: its autoencoder and
        latent scale are kept as they are, and phase 2 fine-tunes its UNet."""
        assert issubclass(cls, LDMGenerator)
        pool = usable_unlabelled(cfg, unlabelled)
        extra = {} if start is None else {"started_from": start.checkpoint_hash}
        cfg = start_fit(train_data, cfg, run_dir, seed, unlabelled_images=len(pool), **extra)
        assert isinstance(cfg, LDMConfig) and cfg.image_size and cfg.ldm.ae_steps
        run_dir, device = Path(run_dir), pick_device(cfg.device)
        names, k = train_data.class_names, train_data.num_classes
        x, y = with_null_class(train_data, pool, cfg.image_size, device)  # (N, 1, S, S), (N,)
        if start is None:
            ae = cls._fit_autoencoder(x, cfg, run_dir, seed, resume)
        else:
            assert isinstance(start, LDMGenerator)
            ae = cast(Autoencoder, copy.deepcopy(start.autoencoder).to(device).eval())
        with torch.no_grad():
            z = encode_all(ae, x)  # (N, C, s, s), scaled
        latents = {"scale_factor": float(ae.scale), "shape": list(z.shape[1:]), "from_start": start is not None}
        write_json(run_dir / AUTOENCODER / "latents.json", latents)

        # Phase 2: the class-conditional UNet on the scaled latents.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            trainer = cls.make_trainer(cfg, k, device)
        if start is not None:
            start_from(trainer, start.nets["all"])

        def grid() -> Tensor:
            preview = cls(cfg, names, cfg.image_size or 0, {AUTOENCODER: ae, "all": trainer.export()})
            with torch.no_grad():
                rows = [preview.generate(*preview.net_for(c, 4), 4, torch.Generator().manual_seed(c),
                                         preview.preview_options()) for c in range(len(names))]  # fmt: skip
            return torch.cat(rows).float().cpu()

        train_loop(trainer, z, y, cfg, run_dir, seed, resume, grid)
        gen = cls(cfg, names, train_data.size, {AUTOENCODER: ae, "all": trainer.export()})
        gen.save(run_dir / GENERATOR)
        return gen

    @staticmethod
    def _fit_autoencoder(x: Tensor, cfg: LDMConfig, run_dir: Path, seed: int, resume: bool) -> Autoencoder:
        """Phase 1 on the images alone; the returned autoencoder scales its latents to unit variance."""
        assert cfg.image_size and cfg.ldm.ae_steps
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            ae_trainer = AutoencoderTrainer(cfg.ldm, cfg.image_size, x.device)
        ae_cfg = cfg.model_copy(update={"steps": cfg.ldm.ae_steps})

        def reconstructions() -> Tensor:  # the first 8 images (top) above their reconstructions
            ae = ae_trainer.ae.eval()
            with torch.no_grad():
                rec = ae.kl.decode(ae.kl.encode(x[:8]).latent_dist.mean).sample
            return torch.cat([x[:8], rec.clamp(-1, 1)]).float().cpu()

        train_loop(ae_trainer, x, None, ae_cfg, run_dir / AUTOENCODER, seed, resume, reconstructions)
        ae = cast(Autoencoder, ae_trainer.export())
        with torch.no_grad():
            ae.scale.fill_(1.0)
            ae.scale.fill_(1.0 / float(encode_all(ae, x).std().clamp_min(1e-6)))
        return ae
