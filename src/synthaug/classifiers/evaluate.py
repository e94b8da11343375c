"""Prediction, evaluation and checkpoint loading: the inference half of the classifier harness."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from synthaug.classifiers.registry import create_model
from synthaug.config.classifier import ModelConfig
from synthaug.data.imageset import ImageSet, to_float


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device, channels_last: bool = False
) -> torch.Tensor:
    """images: uint8 (N, 1, H, W) on CPU -> float32 logits (N, C) on CPU; model left in eval mode."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start : start + batch_size]).to(device, non_blocking=True)  # (B, 1, H, W)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(model(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: nn.Module,
    batch_size: int,
    device: torch.device,
    channels_last: bool = False,
) -> tuple[float, float, np.ndarray]:
    """(mean loss, accuracy, probabilities (N, C)) of ``model`` on uint8 images (N, 1, H, W)."""
    logits = predict_logits(model, images, batch_size, device, channels_last)
    loss = float(loss_fn(logits, labels).item())
    acc = float((logits.argmax(1) == labels).float().mean().item())
    return loss, acc, torch.softmax(logits, dim=1).numpy()


def predict_proba(
    model: nn.Module, data: ImageSet, batch_size: int = 256, device: torch.device | None = None
) -> np.ndarray:
    """Class probabilities (N, C) for an ImageSet."""
    device = device or next(model.parameters()).device
    images = torch.from_numpy(data.images).unsqueeze(1)  # (N, 1, H, W) uint8
    return torch.softmax(predict_logits(model, images, batch_size, device), dim=1).numpy()


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network from a checkpoint's own model config and load its weights.

    Returns (model in eval mode, checkpoint dict without ``state_dict``: model config,
    num_classes, image_size, class_names, epoch, val_loss, seed).
    """
    ckpt = torch.load(Path(path), map_location=device, weights_only=True)
    cfg = ModelConfig.model_validate(ckpt["model_config"])
    model = create_model(cfg.name, ckpt["num_classes"], ckpt["image_size"], pretrained=False, **cfg.options())
    model.load_state_dict(ckpt.pop("state_dict"))
    return model.to(device).eval(), ckpt
