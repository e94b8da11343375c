"""torchvision ResNet-18 for one-channel images: from scratch, fine-tuned, or frozen except ``fc``.

Pretrained RGB weights enter the one-channel stem by **summing** conv1's filters over the RGB
axis: a grey image copied to three channels gives exactly the same conv1 response, so the
pretrained features see what they saw in training (timm's ``adapt_input_conv`` does the same).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torchvision.models import ResNet18_Weights
from torchvision.models.resnet import BasicBlock, ResNet

from synthaug.classifiers.registry import register_model

log = logging.getLogger(__name__)
Mode = Literal["scratch", "finetune", "frozen"]
Stem = Literal["auto", "imagenet", "small"]


class ResNet18(ResNet):
    """ResNet-18 whose backbone can be frozen: then only ``fc`` trains and BatchNorm keeps its statistics."""

    def __init__(self, num_classes: int, small_stem: bool) -> None:
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        self.frozen = False
        if small_stem:
            # CIFAR-style stem: 3x3 stride 1 and no max-pool keeps small images at full resolution.
            self.conv1 = nn.Conv2d(1, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()  # type: ignore[assignment]
        else:
            self.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)

    def freeze_backbone(self) -> None:
        self.frozen = True
        for name, p in self.named_parameters():
            p.requires_grad_(name.startswith("fc."))
        self.train(self.training)

    def train(self, mode: bool = True) -> ResNet18:
        super().train(mode)
        if self.frozen:
            # A frozen backbone must not drift through BatchNorm running statistics either.
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self


def rgb_to_gray_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sum conv1 over the RGB axis, (64, 3, 7, 7) -> (64, 1, 7, 7); drop ``fc`` (new classes)."""
    out = {k: v for k, v in state.items() if not k.startswith("fc.")}
    w = out["conv1.weight"]
    if w.shape[1] == 3:
        out["conv1.weight"] = w.sum(dim=1, keepdim=True)
    return out


def imagenet_state_dict(weights_path: str | None) -> dict[str, torch.Tensor]:
    """ImageNet ResNet-18 weights from a local file, or torchvision's IMAGENET1K_V1 download."""
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise ValueError(f"resnet18 weights_path '{path}' does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
        return state.get("state_dict", state) if isinstance(state, dict) else state
    weights = ResNet18_Weights.IMAGENET1K_V1
    log.info("downloading torchvision %s (set weights_path to use a local file)", weights)
    try:
        return weights.get_state_dict(progress=False)
    except OSError as exc:  # URLError, a DNS failure or a refused connection are all OSErrors
        raise RuntimeError(
            f"could not download the ImageNet ResNet-18 weights from {weights.url} ({exc}). Without internet, "
            "copy that file here and set the model's resnet18.weights_path to it, e.g. "
            "--set 'study.models=[{name: resnet18, resnet18: {mode: frozen, weights_path: /path/resnet18.pth}}]'"
        ) from exc


@register_model("resnet18")
def build_resnet18(
    num_classes: int,
    image_size: int,
    *,
    pretrained: bool = True,
    mode: Mode = "scratch",
    weights_path: str | None = None,
    stem: Stem = "auto",
) -> nn.Module:
    """ResNet-18, one channel in.

    mode: ``scratch`` (random init), ``finetune`` (ImageNet init, all layers train) or
    ``frozen`` (ImageNet init, only ``fc`` trains). stem: ``small`` (3x3, no max-pool) is
    only for scratch; ``auto`` is ``imagenet`` (see docs/BENCHMARKS.md for the measurement).
    """
    if mode not in ("scratch", "finetune", "frozen"):
        raise ValueError(f"resnet18 mode must be scratch, finetune or frozen, got {mode!r}")
    if stem not in ("auto", "imagenet", "small"):
        raise ValueError(f"resnet18 stem must be auto, imagenet or small, got {stem!r}")
    if stem == "small" and mode != "scratch":
        raise ValueError("resnet18 stem=small has no pretrained conv1; use stem=imagenet with finetune/frozen")
    model = ResNet18(num_classes, small_stem=stem == "small")
    if mode != "scratch" and pretrained:
        missing, unexpected = model.load_state_dict(
            rgb_to_gray_state_dict(imagenet_state_dict(weights_path)), strict=False
        )
        if unexpected or set(missing) != {"fc.weight", "fc.bias"}:
            raise ValueError(f"resnet18 weights do not fit: missing {missing}, unexpected {unexpected}")
    if mode == "frozen":
        model.freeze_backbone()
    return model
