"""DCGAN-style GAN with LSGAN or hinge losses; class-conditional through a projection
discriminator (Miyato & Koyama 2018) or a label-embedding input channel. The alternating
discriminator / generator updates live here, not in shared code.

Three aids, all on by default: the mode-seeking term in the generator loss (Mao et al. 2019),
without which the conditional generator ignores z and draws one image per class
(benchmarks/check_gan_collapse.py); a minibatch-standard-deviation feature in the
discriminator (Karras et al. 2018), which lets it see a batch that lacks diversity; and
differentiable augmentation of every image the discriminator sees, real and fake, in both
updates (DiffAugment, Zhao et al. 2020), against memorising a few hundred training images.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from synthaug.config.generators import GANConfig, GeneratorConfig
from synthaug.generators.base import Generator, SampleOptions, noise
from synthaug.generators.vae import ConvDecoder, ConvEncoder


class GANGenerator(nn.Module):
    """z (B, Z) [+ label embedding (B, Z)] -> (B, 1, S, S) in [-1, 1]."""

    def __init__(self, size: int, channels: tuple[int, ...], z_dim: int, num_classes: int | None):
        super().__init__()
        self.z_dim = z_dim
        self.embed = nn.Embedding(num_classes, z_dim) if num_classes else None
        self.decoder = ConvDecoder(size, channels, z_dim * (2 if num_classes else 1), norm="batch")

    def forward(self, z: Tensor, y: Tensor | None) -> Tensor:
        if self.embed is not None and y is not None:
            z = torch.cat([z, self.embed(y)], dim=1)
        return self.decoder(z)


def minibatch_std(h: Tensor, group: int = 4) -> Tensor:
    """(B, F) -> (B, 1): the feature-wise std over groups of ``group`` samples, averaged over
    features and given to every member of the group (Karras et al. 2018, sec. 3). A batch of
    near-identical images gets a value near 0, one a discriminator learns to call fake."""
    b = len(h)
    g = max(d for d in range(1, min(group, b) + 1) if b % d == 0)  # largest divisor of B up to group
    if g < 2:
        return torch.zeros((b, 1), dtype=h.dtype, device=h.device)
    y = h.view(g, b // g, -1)  # member i of group j is row i * (B / g) + j
    std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=1)  # (B / g,)
    return std.repeat(g).unsqueeze(1)  # (B, 1)


DIFFAUGMENT = ("color", "translation", "cutout")


def diff_augment(x: Tensor, policy: tuple[str, ...], gen: torch.Generator) -> Tensor:
    """Differentiable augmentation of images in [-1, 1] (Zhao et al. 2020), one draw per image.

    ``color``: brightness shift in [-0.5, 0.5) and contrast factor in [0.5, 1.5) (the one-channel
    part of the paper's colour policy); ``translation``: shift by up to 1/8 of the side, the gap
    filled with -1 (black background); ``cutout``: a square of half the side set to 0 at a random
    centre. Gradients reach ``x`` through every operation.
    """
    b, _, s, _ = x.shape
    dev = x.device

    def uniform(*shape: int) -> Tensor:
        return torch.rand(shape, generator=gen, device=dev, dtype=x.dtype)

    for op in policy:
        if op == "color":
            x = x + (uniform(b, 1, 1, 1) - 0.5)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * (uniform(b, 1, 1, 1) + 0.5) + mean
        elif op == "translation":
            p = max(1, round(s / 8))
            padded = F.pad(x, (p, p, p, p), value=-1.0)
            dy, dx = (torch.randint(0, 2 * p + 1, (2, b), generator=gen, device=dev)).unbind(0)  # (B,) each
            idx = torch.arange(s, device=dev)
            rows = (dy[:, None] + idx)[:, :, None]  # (B, S, 1)
            cols = (dx[:, None] + idx)[:, None, :]  # (B, 1, S)
            x = padded[torch.arange(b, device=dev)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
        elif op == "cutout":
            half = s // 4  # the square's half side: side s / 2
            cy, cx = torch.randint(0, s, (2, b), generator=gen, device=dev).unbind(0)
            idx = torch.arange(s, device=dev)
            inside_y = (idx[None, :] - cy[:, None]).abs() < half  # (B, S)
            inside_x = (idx[None, :] - cx[:, None]).abs() < half
            keep = ~(inside_y[:, :, None] & inside_x[:, None, :])  # (B, S, S)
            x = x * keep[:, None].to(x.dtype)
        else:
            raise ValueError(f"unknown DiffAugment operation {op!r}; choose from {', '.join(DIFFAUGMENT)}")
    return x


class Discriminator(nn.Module):
    """(B, 1, S, S) [+ labels] -> (B,) realness scores."""

    def __init__(
        self,
        size: int,
        channels: tuple[int, ...],
        num_classes: int | None,
        conditioning: str,
        sn: bool,
        mbstd: bool = False,
    ):
        super().__init__()
        wrap = spectral_norm if sn else (lambda m: m)
        self.size, self.mode = size, conditioning if num_classes else "none"
        # "embedding": a learned (S, S) label map joins the image as a second input channel.
        self.label_map = nn.Embedding(num_classes, size * size) if self.mode == "embedding" and num_classes else None
        self.features = ConvEncoder(size, channels, 2 if self.label_map else 1, norm=None, wrap=wrap)
        self.mbstd = mbstd
        # a bias cancels in the hinge loss
        self.head = wrap(nn.Linear(self.features.out_features + int(mbstd), 1, bias=False))
        self.project = (
            wrap(nn.Embedding(num_classes, self.features.out_features))
            if self.mode == "projection" and num_classes
            else None
        )

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        if self.label_map is not None and y is not None:
            x = torch.cat([x, self.label_map(y).view(-1, 1, self.size, self.size)], dim=1)
        h = self.features(x)  # (B, F)
        out = self.head(torch.cat([h, minibatch_std(h)], dim=1) if self.mbstd else h).squeeze(1)  # (B,)
        if self.project is not None and y is not None:
            out = out + (self.project(y) * h).sum(dim=1)  # projection term <embed(y), h>
        return out


def d_loss(kind: str, real: Tensor, fake: Tensor) -> Tensor:
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return 0.5 * ((real - 1).pow(2).mean() + fake.pow(2).mean())


def g_loss(kind: str, fake: Tensor) -> Tensor:
    return -fake.mean() if kind == "hinge" else 0.5 * (fake - 1).pow(2).mean()


class GANTrainer:
    """Alternating updates: ``d_steps`` discriminator steps, then one generator step (Adam)."""

    def __init__(self, cfg: GeneratorConfig, num_classes: int | None, device: torch.device):
        assert isinstance(cfg, GANConfig)
        g = cfg.gan
        assert cfg.image_size and g.channels, "resolve() the config first"
        self.cfg = g
        self.g = GANImageGenerator.build_net(cfg, num_classes).to(device)
        self.d = Discriminator(
            cfg.image_size,
            g.channels,
            num_classes,
            g.conditioning,
            sn=g.spectral_norm or g.loss == "hinge",
            mbstd=g.minibatch_std,
        ).to(device)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=cfg.lr or 2e-4, betas=g.betas)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg.lr or 2e-4, betas=g.betas)
        self.nets: dict[str, nn.Module] = {"g": self.g, "d": self.d}

    def _d(self, x: Tensor, y: Tensor | None, gen: torch.Generator) -> Tensor:
        """The discriminator on augmented images (the same augmentation for real and fake)."""
        return self.d(diff_augment(x, self.cfg.diffaugment, gen) if self.cfg.diffaugment else x, y)

    def step(self, x: Tensor, y: Tensor | None, gen: torch.Generator) -> dict[str, float]:
        self.g.train()
        self.d.train().requires_grad_(True)
        for _ in range(self.cfg.d_steps):
            with torch.no_grad():
                fake = self.g(torch.randn((len(x), self.cfg.z_dim), generator=gen, device=x.device), y)
            loss_d = d_loss(self.cfg.loss, self._d(x, y, gen), self._d(fake, y, gen))
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
        self.d.requires_grad_(False)  # the generator step must not touch D's gradients
        z = torch.randn((len(x), self.cfg.z_dim), generator=gen, device=x.device)
        fake = self.g(z, y)
        loss_g = g_loss(self.cfg.loss, self._d(fake, y, gen))
        logs = {"loss_d": loss_d.item(), "loss_g": loss_g.item()}
        if self.cfg.mode_seeking > 0:
            # Mode seeking (Mao et al. 2019): a second draw z2 for the same labels; penalise images
            # that move less than their codes, so G cannot ignore z given the class.
            z2 = torch.randn((len(x), self.cfg.z_dim), generator=gen, device=x.device)
            ratio = (fake - self.g(z2, y)).abs().mean() / (z - z2).abs().mean()
            loss_g = loss_g + self.cfg.mode_seeking / (ratio + 1e-5)
            logs["ms_ratio"] = ratio.item()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.d.requires_grad_(True)
        return logs

    def state_dict(self) -> dict[str, Any]:
        return {
            "g": self.g.state_dict(),
            "d": self.d.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("g", "d", "opt_g", "opt_d"):
            getattr(self, name).load_state_dict(state[name])

    def export(self) -> nn.Module:
        return self.g


class GANImageGenerator(Generator):
    """Samples z ~ N(0, I) through the trained generator network."""

    @classmethod
    def build_net(cls, cfg: GeneratorConfig, num_classes: int | None) -> nn.Module:
        assert isinstance(cfg, GANConfig) and cfg.image_size and cfg.gan.channels, "resolve() the config first"
        return GANGenerator(cfg.image_size, cfg.gan.channels, cfg.gan.z_dim, num_classes)

    @classmethod
    def make_trainer(cls, cfg: GeneratorConfig, num_classes: int | None, device: torch.device) -> GANTrainer:
        return GANTrainer(cfg, num_classes, device)

    def generate(self, net: nn.Module, labels: Tensor | None, n: int, rng: Any, opts: SampleOptions) -> Tensor:
        assert isinstance(net, GANGenerator)
        return net(noise((n, net.z_dim), rng, self.device), labels)  # (n, 1, S, S)
