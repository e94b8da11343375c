"""The thesis's basic CNN: two conv blocks (conv, ReLU, max-pool), then a two-hidden-layer MLP head."""

from __future__ import annotations

import torch
from torch import nn

from synthaug.classifiers.registry import register_model


class BasicCNN(nn.Module):
    """conv-(BN)-ReLU-maxpool ×2 -> adaptive average pool -> FC-ReLU-FC-ReLU-FC.

    The adaptive pool (to ``pooled_size``²) keeps the head the same size at 64 and 128 px, so
    the MLP does not grow to tens of millions of weights at larger resolutions.
    """

    def __init__(
        self,
        num_classes: int,
        channels: tuple[int, int] = (32, 64),
        hidden: tuple[int, int] = (256, 128),
        dropout: float = 0.3,
        batch_norm: bool = True,
        pooled_size: int = 8,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=not batch_norm)]
            layers += [nn.BatchNorm2d(c)] if batch_norm else []
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(pooled_size))
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * pooled_size**2, hidden[0]),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden[1], num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, 1, H, W) -> features (N, C, P, P) -> logits (N, num_classes)
        return self.head(self.features(x))


@register_model("cnn")
def build_cnn(
    num_classes: int,
    image_size: int,
    *,
    pretrained: bool = True,
    channels: tuple[int, int] = (32, 64),
    hidden: tuple[int, int] = (256, 128),
    dropout: float = 0.3,
    batch_norm: bool = True,
    pooled_size: int = 8,
) -> nn.Module:
    """Basic CNN (no pretrained weights exist; ``pretrained`` is ignored)."""
    if image_size < 4:
        raise ValueError(f"cnn needs images of at least 4 px, got {image_size}")
    return BasicCNN(num_classes, tuple(channels), tuple(hidden), dropout, batch_norm, pooled_size)  # type: ignore[arg-type]
