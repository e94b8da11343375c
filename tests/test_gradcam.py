"""Grad-CAM: a model made to look at the lesion gets high CAM energy in the mask; target layers for CNN, ResNet, ViT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from synthaug.data.imageset import ImageSet, to_float
from synthaug.explain import (
    cam_maps,
    cam_panel,
    compare_cams,
    energy_in_mask,
    mean_cam_correlation,
    pick_target_layer,
    pointing_game,
)


class LesionDetector(nn.Module):
    """Logit of class 1 = mean of a positive-weight conv response times a fixed weight map; class 0 = minus that.

    On dark images (-1) the conv + ReLU is zero; it fires only on bright pixels, i.e. the lesions.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.fill_(1 / 9)
            self.conv.bias.zero_()
        self.act = nn.ReLU()
        self.register_buffer("weight_map", torch.ones(1, 1, size, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.conv(x))  # (N, 4, H, W)
        score = (a * self.weight_map).mean(dim=(1, 2, 3))  # (N,)
        return torch.stack([-score, score], dim=1)  # (N, 2)


def blobs(n: int, size: int, seed: int, with_masks: bool = True) -> ImageSet:
    """Dark noisy images, each with one bright disc (the lesion) at a random place; masks = the discs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = rng.integers(0, 25, (n, size, size)).astype(np.uint8)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        cy, cx, r = rng.integers(8, size - 8), rng.integers(8, size - 8), rng.integers(3, 6)
        masks[i] = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        images[i][masks[i]] = rng.integers(200, 256, masks[i].sum())
    ids = np.array([f"blob_{seed}_{i}" for i in range(n)], dtype=object)
    return ImageSet(images, np.ones(n, np.int64), ids, ("clean", "lesion"), masks=masks if with_masks else None)


def test_cam_energy_is_high_on_a_model_that_looks_at_the_lesion() -> None:
    data = blobs(12, 32, seed=0)
    model = LesionDetector(32)
    layer, reshape = pick_target_layer(model)
    assert layer is model.conv and reshape is None
    cams = cam_maps(model, to_float(data.images), model.act, data.labels)
    assert cams.shape == (12, 32, 32) and cams.min() >= 0 and cams.max() <= 1
    assert data.masks is not None
    assert np.nanmean(energy_in_mask(cams, data.masks)) > 0.5
    assert np.nanmean(pointing_game(cams, data.masks, tolerance=2)) >= 0.8
    assert model.training  # handed back in the mode it came in


def test_energy_and_pointing_known_answers() -> None:
    cams = np.zeros((3, 8, 8), np.float32)
    masks = np.zeros((3, 8, 8), bool)
    cams[0, 2, 2], masks[0, 2, 2] = 1.0, True  # all energy inside, peak inside
    cams[1, 0, 0], masks[1, 2, 2] = 1.0, True  # peak two pixels off the mask
    cams[2, 4, 4] = 1.0  # no lesion
    energy = energy_in_mask(cams, masks)
    assert energy[0] == 1.0 and energy[1] == 0.0 and np.isnan(energy[2])
    assert pointing_game(cams, masks, tolerance=0)[:2].tolist() == [1.0, 0.0]
    assert pointing_game(cams, masks, tolerance=2)[:2].tolist() == [1.0, 1.0]
    assert np.isnan(pointing_game(cams, masks)[2])


def test_mean_cam_correlation() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((6, 8, 8)).astype(np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1])
    same = mean_cam_correlation(a, labels, a, labels, ("x", "y"))
    assert same["x"] == pytest.approx(1.0) and same["y"] == pytest.approx(1.0)
    flipped = mean_cam_correlation(a, labels, 1 - a, labels, ("x", "y"))
    assert flipped["x"] == pytest.approx(-1.0)
    assert mean_cam_correlation(a, labels, a[:3], labels[:3], ("x", "y"))["y"] is None


def test_compare_cams_and_panel(tmp_path: Path) -> None:
    real, synthetic = blobs(8, 32, seed=1), blobs(8, 32, seed=2, with_masks=False)
    figures, cams_r, cams_s = compare_cams(LesionDetector(32), real, synthetic, tolerance=2)
    assert figures["real"]["energy_in_mask"] > 0.5 and figures["real"]["n_with_lesion"] == 8
    assert figures["synthetic"]["energy_in_mask"] is None
    assert figures["mean_cam_correlation"]["clean"] is None
    assert figures["mean_cam_correlation"]["lesion"] is not None
    png = cam_panel(real, cams_r, synthetic, cams_s, per_class=2, path=tmp_path / "explain" / "panel.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "explain" / "panel.png").read_bytes() == png


def test_resnet_layer_found_inside_a_wrapper() -> None:
    from torchvision.models import resnet18

    net = resnet18(num_classes=3)
    net.conv1 = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
    wrapper = nn.Sequential(net)
    layer, reshape = pick_target_layer(wrapper)
    assert layer is net.layer4[-1] and reshape is None
    cams = cam_maps(wrapper, torch.randn(2, 1, 64, 64), layer, [0, 2])
    assert cams.shape == (2, 64, 64) and np.isfinite(cams).all()


@pytest.mark.parametrize(("size", "patch"), [(64, 8), (64, 16), (128, 8), (128, 16)])
def test_vit_reshape_transform_runs(size: int, patch: int) -> None:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(
        img_size=size, patch_size=patch, in_chans=1, num_classes=4, embed_dim=24, depth=2, num_heads=2
    )
    layer, reshape = pick_target_layer(vit)
    assert layer is vit.blocks[-1].norm1 and reshape is not None
    maps = reshape(torch.zeros(2, 1 + (size // patch) ** 2, 24))
    assert maps.shape == (2, 24, size // patch, size // patch)
    cams = cam_maps(vit, torch.randn(2, 1, size, size), layer, [1, 3], reshape)
    assert cams.shape == (2, size, size) and np.isfinite(cams).all() and cams.max() <= 1
