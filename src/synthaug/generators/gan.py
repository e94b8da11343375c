"""DCGAN-style GAN with LSGAN or hinge losses; class-conditional through a projection
discriminator (Miyato & Koyama 2018) or a label-embedding input channel. The alternating
discriminator / generator updates live here, not in shared code.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from synthaug.generators.base import Generator, SampleOptions, noise, register
from synthaug.generators.config import GeneratorConfig
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


class Discriminator(nn.Module):
    """(B, 1, S, S) [+ labels] -> (B,) realness scores."""

    def __init__(self, size: int, channels: tuple[int, ...], num_classes: int | None, conditioning: str, sn: bool):
        super().__init__()
        wrap = spectral_norm if sn else (lambda m: m)
        self.size, self.mode = size, conditioning if num_classes else "none"
        # "embedding": a learned (S, S) label map joins the image as a second input channel.
        self.label_map = nn.Embedding(num_classes, size * size) if self.mode == "embedding" and num_classes else None
        self.features = ConvEncoder(size, channels, 2 if self.label_map else 1, norm=None, wrap=wrap)
        self.head = wrap(nn.Linear(self.features.out_features, 1, bias=False))  # a bias cancels in the hinge loss
        self.project = (
            wrap(nn.Embedding(num_classes, self.features.out_features))
            if self.mode == "projection" and num_classes
            else None
        )

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        if self.label_map is not None and y is not None:
            x = torch.cat([x, self.label_map(y).view(-1, 1, self.size, self.size)], dim=1)
        h = self.features(x)  # (B, F)
        out = self.head(h).squeeze(1)  # (B,)
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
        g = cfg.gan
        assert cfg.image_size and g.channels, "resolve() the config first"
        self.cfg = g
        self.g = GANImageGenerator.build_net(cfg, num_classes).to(device)
        self.d = Discriminator(
            cfg.image_size, g.channels, num_classes, g.conditioning, sn=g.spectral_norm or g.loss == "hinge"
        ).to(device)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=cfg.lr or 2e-4, betas=g.betas)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg.lr or 2e-4, betas=g.betas)
        self.nets: dict[str, nn.Module] = {"g": self.g, "d": self.d}

    def step(self, x: Tensor, y: Tensor | None, gen: torch.Generator) -> dict[str, float]:
        self.g.train()
        self.d.train().requires_grad_(True)
        for _ in range(self.cfg.d_steps):
            with torch.no_grad():
                fake = self.g(torch.randn((len(x), self.cfg.z_dim), generator=gen, device=x.device), y)
            loss_d = d_loss(self.cfg.loss, self.d(x, y), self.d(fake, y))
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
        self.d.requires_grad_(False)  # the generator step must not touch D's gradients
        fake = self.g(torch.randn((len(x), self.cfg.z_dim), generator=gen, device=x.device), y)
        loss_g = g_loss(self.cfg.loss, self.d(fake, y))
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.d.requires_grad_(True)
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item()}

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


@register("gan")
class GANImageGenerator(Generator):
    """Samples z ~ N(0, I) through the trained generator network."""

    @classmethod
    def build_net(cls, cfg: GeneratorConfig, num_classes: int | None) -> nn.Module:
        assert cfg.image_size and cfg.gan.channels, "resolve() the config first"
        return GANGenerator(cfg.image_size, cfg.gan.channels, cfg.gan.z_dim, num_classes)

    @classmethod
    def make_trainer(cls, cfg: GeneratorConfig, num_classes: int | None, device: torch.device) -> GANTrainer:
        return GANTrainer(cfg, num_classes, device)

    def generate(self, net: nn.Module, labels: Tensor | None, n: int, rng: Any, opts: SampleOptions) -> Tensor:
        assert isinstance(net, GANGenerator)
        return net(noise((n, net.z_dim), rng, self.device), labels)  # (n, 1, S, S)
