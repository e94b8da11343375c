"""Variational autoencoder: conv encoder/decoder, reparameterisation, loss = recon + beta * KL.

``ConvEncoder`` / ``ConvDecoder`` are plain stride-2 conv stacks also used by the GAN.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthaug.config.generators import GeneratorConfig, VAEConfig
from synthaug.generators.base import Generator, SampleOptions, noise


def _norm(kind: str, c: int) -> nn.Module:
    return nn.BatchNorm2d(c) if kind == "batch" else nn.GroupNorm(math.gcd(8, c), c)


class ConvEncoder(nn.Module):
    """(B, C_in, S, S) -> (B, channels[-1] * (S / 2^L)^2); one stride-2 conv per width."""

    def __init__(
        self, size: int, channels: tuple[int, ...], in_channels: int = 1, norm: str | None = "group", wrap: Any = None
    ):
        super().__init__()
        if size % 2 ** len(channels):
            raise ValueError(f"image_size {size} is not divisible by 2^{len(channels)} (one halving per channel)")
        wrap = wrap or (lambda m: m)
        layers: list[nn.Module] = []
        for c_in, c_out in zip((in_channels, *channels[:-1]), channels, strict=True):
            layers += [
                wrap(nn.Conv2d(c_in, c_out, 4, 2, 1)),
                *([_norm(norm, c_out)] if norm else []),
                nn.LeakyReLU(0.2),
            ]
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.out_features = channels[-1] * (size // 2 ** len(channels)) ** 2

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """(B, in_features) -> (B, 1, S, S) in [-1, 1]; mirrors :class:`ConvEncoder`."""

    def __init__(self, size: int, channels: tuple[int, ...], in_features: int, norm: str = "group"):
        super().__init__()
        self.s0, self.c0 = size // 2 ** len(channels), channels[-1]
        self.fc = nn.Linear(in_features, self.c0 * self.s0**2)
        widths = (*channels[::-1], channels[0])  # e.g. (128, 64, 32, 32): L transposed convs
        layers: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(widths):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), _norm(norm, c_out), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.Conv2d(channels[0], 1, 3, 1, 1), nn.Tanh())

    def forward(self, h: Tensor) -> Tensor:
        return self.net(self.fc(h).view(-1, self.c0, self.s0, self.s0))


class VAE(nn.Module):
    """Conditional when ``num_classes`` is given: the label embedding joins encoder and decoder."""

    def __init__(self, size: int, channels: tuple[int, ...], latent_dim: int, num_classes: int | None):
        super().__init__()
        self.latent_dim = latent_dim
        emb = latent_dim if num_classes else 0
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        self.encoder = ConvEncoder(size, channels)
        self.to_stats = nn.Linear(self.encoder.out_features + emb, 2 * latent_dim)
        self.decoder = ConvDecoder(size, channels, latent_dim + emb)

    def _cond(self, h: Tensor, y: Tensor | None) -> Tensor:
        return h if self.embed is None or y is None else torch.cat([h, self.embed(y)], dim=1)

    def decode(self, z: Tensor, y: Tensor | None) -> Tensor:
        return self.decoder(self._cond(z, y))  # (B, 1, S, S)

    def forward(self, x: Tensor, y: Tensor | None, eps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.to_stats(self._cond(self.encoder(x), y)).chunk(2, dim=1)  # (B, Z) each
        z = mu + eps * torch.exp(0.5 * logvar)  # reparameterisation (Kingma & Welling eq. 10)
        return self.decode(z, y), mu, logvar


def build_vae(cfg: GeneratorConfig, num_classes: int | None) -> VAE:
    assert isinstance(cfg, VAEConfig)
    assert cfg.image_size and cfg.vae.channels and cfg.vae.latent_dim, "resolve() the config first"
    return VAE(cfg.image_size, cfg.vae.channels, cfg.vae.latent_dim, num_classes)


class VAETrainer:
    """Adam on reconstruction (sum of squares per image) + beta * KL(q(z|x) || N(0, I))."""

    def __init__(self, cfg: GeneratorConfig, num_classes: int | None, device: torch.device):
        assert isinstance(cfg, VAEConfig)
        self.vae = build_vae(cfg, num_classes).to(device)
        self.beta = cfg.vae.beta
        self.opt = torch.optim.Adam(self.vae.parameters(), lr=cfg.lr or 1e-3)
        self.nets: dict[str, nn.Module] = {"vae": self.vae}

    def step(self, x: Tensor, y: Tensor | None, gen: torch.Generator) -> dict[str, float]:
        self.vae.train()
        eps = torch.randn((len(x), self.vae.latent_dim), generator=gen, device=x.device)
        x_hat, mu, logvar = self.vae(x, y, eps)
        recon = F.mse_loss(x_hat, x, reduction="sum") / len(x)
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(x)
        loss = recon + self.beta * kl
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), "recon": recon.item(), "kl": kl.item()}

    def state_dict(self) -> dict[str, Any]:
        return {"vae": self.vae.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.vae.load_state_dict(state["vae"])
        self.opt.load_state_dict(state["opt"])

    def export(self) -> nn.Module:
        return self.vae


class VAEGenerator(Generator):
    """Samples z ~ N(0, I) and decodes it."""

    @classmethod
    def build_net(cls, cfg: GeneratorConfig, num_classes: int | None) -> nn.Module:
        return build_vae(cfg, num_classes)

    @classmethod
    def make_trainer(cls, cfg: GeneratorConfig, num_classes: int | None, device: torch.device) -> VAETrainer:
        return VAETrainer(cfg, num_classes, device)

    def generate(self, net: nn.Module, labels: Tensor | None, n: int, rng: Any, opts: SampleOptions) -> Tensor:
        assert isinstance(net, VAE)
        z = noise((n, net.latent_dim), rng, self.device)  # (n, Z)
        return net.decode(z, labels)
