"""Grad-CAM on real vs synthetic images (pytorch-grad-cam), with numbers instead of only pictures.

With lesion masks: the share of CAM energy inside the lesion and the pointing-game hit rate
(CAM argmax inside the mask dilated by ``tolerance`` px). Without masks: Pearson correlation
of the per-class mean CAM of real and synthetic images — does the classifier look at the
same places in both?
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from synthaug.data.imageset import ImageSet, to_float
from synthaug.io import atomic_write

ReshapeTransform = Callable[[torch.Tensor], torch.Tensor]


def vit_reshape_transform(num_prefix_tokens: int = 1, grid: tuple[int, int] | None = None) -> ReshapeTransform:
    """Tokens (N, prefix + h*w, D) -> maps (N, D, h, w): drop class/register tokens, lay patches on the grid."""

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, num_prefix_tokens:, :]  # (N, h*w, D)
        h, w = grid if grid is not None else (math.isqrt(patches.shape[1]),) * 2
        if h * w != patches.shape[1]:
            raise ValueError(f"{patches.shape[1]} patch tokens do not fill a {h}x{w} grid")
        return patches.reshape(len(tokens), h, w, -1).permute(0, 3, 1, 2)  # (N, D, h, w)

    return reshape


def pick_target_layer(model: nn.Module) -> tuple[nn.Module, ReshapeTransform | None]:
    """Grad-CAM layer for a model (found inside wrappers too), and the reshape transform it needs.

    timm ViT (``blocks`` + ``patch_embed``): last block's ``norm1`` with :func:`vit_reshape_transform`;
    torchvision ResNet (``layer4``): ``layer4[-1]``; anything else: its last ``nn.Conv2d``.
    """
    for module in model.modules():
        blocks, embed = getattr(module, "blocks", None), getattr(module, "patch_embed", None)
        if isinstance(blocks, nn.Sequential) and embed is not None:
            grid = getattr(embed, "grid_size", None)
            prefix = int(getattr(module, "num_prefix_tokens", 1))
            norm1 = blocks[-1].norm1
            assert isinstance(norm1, nn.Module)
            return norm1, vit_reshape_transform(prefix, tuple(grid) if grid is not None else None)
        layer4 = getattr(module, "layer4", None)
        if isinstance(layer4, nn.Sequential):
            return layer4[-1], None
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"no Grad-CAM target layer found in {type(model).__name__}: no ViT blocks, layer4 or Conv2d")
    return convs[-1], None


def cam_maps(
    model: nn.Module,
    images: torch.Tensor,
    target_layer: nn.Module,
    targets: Sequence[int] | np.ndarray,
    reshape_transform: ReshapeTransform | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Grad-CAM maps (N, H, W) float32 in [0, 1] of ``images`` (N, 1, H, W) for class ids ``targets`` (N,)."""
    if len(targets) != len(images):
        raise ValueError(f"{len(images)} images but {len(targets)} targets")
    was_training = model.training  # GradCAM switches the model to eval mode; give it back as it came
    device = next(model.parameters()).device
    out = []
    try:
        with GradCAM(model=model, target_layers=[target_layer], reshape_transform=reshape_transform) as cam:
            for s in range(0, len(images), batch_size):
                batch = images[s : s + batch_size].to(device)
                tgt = [ClassifierOutputTarget(int(t)) for t in targets[s : s + batch_size]]
                out.append(cam(input_tensor=batch, targets=tgt))  # (b, H, W) min-max scaled per image
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return np.concatenate(out).astype(np.float32)


def energy_in_mask(cams: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of CAM energy (sum) inside each mask -> (N,), NaN where the mask is empty (no lesion)."""
    total = cams.sum(axis=(1, 2))
    inside = (cams * masks).sum(axis=(1, 2))
    valid = masks.any(axis=(1, 2)) & (total > 0)
    return np.where(valid, inside / np.where(total > 0, total, 1.0), np.nan)


def pointing_game(cams: np.ndarray, masks: np.ndarray, tolerance: int = 0) -> np.ndarray:
    """1.0 where the CAM argmax falls inside the mask dilated by ``tolerance`` px (square), NaN without a lesion."""
    m = torch.as_tensor(masks, dtype=torch.float32)[:, None]  # (N, 1, H, W)
    if tolerance > 0:
        m = F.max_pool2d(m, 2 * tolerance + 1, stride=1, padding=tolerance)
    flat = m.flatten(1)  # (N, H*W)
    peak = torch.as_tensor(cams).flatten(1).argmax(dim=1)  # (N,)
    hit = flat.gather(1, peak[:, None])[:, 0].numpy()
    return np.where(masks.any(axis=(1, 2)), hit, np.nan)


def mean_cam_correlation(
    cams_a: np.ndarray, labels_a: np.ndarray, cams_b: np.ndarray, labels_b: np.ndarray, class_names: Sequence[str]
) -> dict[str, float | None]:
    """Pearson r between the mean CAM (H, W) of each class in set a and in set b; None when a class is missing."""
    out: dict[str, float | None] = {}
    for c, name in enumerate(class_names):
        a, b = labels_a == c, labels_b == c
        if not (a.any() and b.any()):
            out[name] = None
            continue
        ma, mb = cams_a[a].mean(axis=0).ravel(), cams_b[b].mean(axis=0).ravel()
        out[name] = float(np.corrcoef(ma, mb)[0, 1]) if ma.std() > 0 and mb.std() > 0 else None
    return out


def mask_stats(cams: np.ndarray, data: ImageSet, tolerance: int) -> dict[str, Any]:
    """Mean lesion energy and pointing-game hit rate of CAMs (N, H, W) on ``data`` (None without masks)."""
    if data.masks is None or not data.masks.any():
        return {"energy_in_mask": None, "pointing_game": None, "n_with_lesion": 0}
    energy, hits = energy_in_mask(cams, data.masks), pointing_game(cams, data.masks, tolerance)
    return {  # None where no image gives a figure (e.g. all-zero CAMs have no energy to share out)
        "energy_in_mask": float(np.nanmean(energy)) if np.isfinite(energy).any() else None,
        "pointing_game": float(np.nanmean(hits)) if np.isfinite(hits).any() else None,
        "n_with_lesion": int(np.isfinite(hits).sum()),
    }


def compare_cams(
    model: nn.Module,
    real: ImageSet,
    synthetic: ImageSet,
    target_layer: nn.Module | None = None,
    reshape_transform: ReshapeTransform | None = None,
    tolerance: int = 2,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Grad-CAM for the true class of real and synthetic images -> (JSON-ready figures, real CAMs, synthetic CAMs).

    Figures: energy-in-mask and pointing game per source (None where a set has no masks) and the
    per-class correlation of mean CAMs between real and synthetic images.
    """
    if target_layer is None:
        target_layer, reshape_transform = pick_target_layer(model)
    cams_r = cam_maps(model, to_float(real.images), target_layer, real.labels, reshape_transform)
    cams_s = cam_maps(model, to_float(synthetic.images), target_layer, synthetic.labels, reshape_transform)
    figures = {
        "target_layer": type(target_layer).__name__,
        "tolerance_px": tolerance,
        "real": {"n": len(real), **mask_stats(cams_r, real, tolerance)},
        "synthetic": {"n": len(synthetic), **mask_stats(cams_s, synthetic, tolerance)},
        "mean_cam_correlation": mean_cam_correlation(cams_r, real.labels, cams_s, synthetic.labels, real.class_names),
    }
    return figures, cams_r, cams_s


def cam_panel(
    real: ImageSet,
    cams_real: np.ndarray,
    synthetic: ImageSet,
    cams_synthetic: np.ndarray,
    per_class: int = 3,
    path: str | Path | None = None,
) -> bytes:
    """PNG (bytes, also written to ``path``): a row per class, ``per_class`` real then synthetic images + CAM."""
    names = real.class_names
    cols = 2 * per_class
    fig = Figure(figsize=(1.3 * cols, 1.4 * len(names)))
    axes = fig.subplots(len(names), cols, squeeze=False)
    for c, name in enumerate(names):
        for k, (data, cams, tag) in enumerate(((real, cams_real, "real"), (synthetic, cams_synthetic, "synthetic"))):
            idx = np.flatnonzero(data.labels == c)[:per_class]
            for j in range(per_class):
                ax = axes[c, k * per_class + j]
                ax.set_axis_off()
                if j < len(idx):
                    ax.imshow(data.images[idx[j]], cmap="gray", vmin=0, vmax=255)
                    ax.imshow(cams[idx[j]], cmap="jet", alpha=0.4, vmin=0, vmax=1)
                if c == 0 and j == 0:
                    ax.set_title(tag, fontsize=8, loc="left")
        axes[c, 0].text(-0.1, 0.5, name, transform=axes[c, 0].transAxes, ha="right", va="center", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    png = buf.getvalue()
    if path is not None:
        atomic_write(path, lambda p: p.write_bytes(png))
    return png
