"""Feature networks for generative-quality and memorization metrics: images -> (N, D) vectors.

Every extractor maps float (N, 1, H, W) in [-1, 1] (see :func:`synthaug.data.imageset.to_float`)
to (N, D) features and carries a ``name`` that results record, because an FID is only
comparable with FIDs measured with the same network.

- :class:`EncoderFeatures`: penultimate-layer features of a classifier trained on the real
  training data (in-domain; the default for small medical datasets, where ImageNet features
  describe the images poorly).
- :class:`InceptionFeatures`: Inception-v3 pool features, from a local weights file only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthaug.data.imageset import to_float

FeaturesFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]
INCEPTION_SETTING = "quality.inception_weights"


class FeatureExtractor(nn.Module):
    """Base class: ``forward`` maps (N, 1, H, W) in [-1, 1] to (N, D); ``name`` names the network."""

    name: str = "features"

    def train(self, mode: bool = True) -> FeatureExtractor:
        # Feature networks are frozen measuring instruments: BatchNorm / Dropout stay in eval mode.
        return super().train(False)


def _pool(x: torch.Tensor) -> torch.Tensor:
    """Feature maps (N, C, h, w) -> (N, C) by global average; tokens (N, T, D) -> (N, D) by mean."""
    if x.ndim == 4:
        return x.mean(dim=(2, 3))
    if x.ndim == 3:
        return x.mean(dim=1)
    return x.flatten(1)


class EncoderFeatures(FeatureExtractor):
    """Features of a trained classifier: ``features_fn(model, x)``, a hooked ``layer``, or ``forward_features``.

    Args:
        model: any classifier nn.Module taking (N, 1, H, W) in [-1, 1].
        features_fn: callable returning (N, D) (or maps / tokens, pooled here) for a batch.
        layer: a submodule whose output is the penultimate representation (captured with a hook).
        name: recorded in results, e.g. ``"encoder:resnet18@seed0"``.
    """

    def __init__(
        self,
        model: nn.Module,
        features_fn: FeaturesFn | None = None,
        layer: nn.Module | None = None,
        name: str = "encoder",
    ) -> None:
        super().__init__()
        if features_fn is None and layer is None and not callable(getattr(model, "forward_features", None)):
            raise ValueError(
                f"EncoderFeatures({type(model).__name__}) needs features_fn or layer: the model has no forward_features"
            )
        self.model = model
        self.features_fn = features_fn
        self.layer = layer
        self.name = name
        self.train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.features_fn is not None:
            return _pool(self.features_fn(self.model, x))
        if self.layer is None:
            return _pool(self.model.forward_features(x))  # type: ignore[operator]
        captured: list[torch.Tensor] = []
        handle = self.layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            self.model(x)
        finally:
            handle.remove()
        return _pool(captured[0])


class InceptionFeatures(FeatureExtractor):
    """Inception-v3 2048-d pool features from a local weights file (never downloaded).

    With torch-fidelity installed the file is the FID Inception (``pt_inception-2015-12-05``)
    loaded through torchmetrics, so values compare with published FIDs; otherwise it is a
    torchvision ``inception_v3`` state dict and the name says so.
    """

    def __init__(self, weights_path: str | Path | None) -> None:
        super().__init__()
        if weights_path is None or not Path(weights_path).is_file():
            raise FileNotFoundError(
                f"Inception features need a local weights file; set {INCEPTION_SETTING} to its path "
                f"(got {weights_path!r}). synthaug never downloads weights — or use the in-domain encoder features."
            )
        self.weights_path = str(weights_path)
        self.fidelity = _has_torch_fidelity()
        self.net = (
            _fidelity_inception(self.weights_path) if self.fidelity else _torchvision_inception(self.weights_path)
        )
        kind = "fid-inception-v3" if self.fidelity else "torchvision-inception-v3"
        self.name = f"{kind}:{Path(weights_path).name}"
        self.train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = x.clamp(-1, 1).add(1).div(2).expand(-1, 3, -1, -1)  # (N, 3, H, W) in [0, 1]
        if self.fidelity:  # the FID network takes uint8 and resizes to 299 itself
            return self.net(rgb.mul(255).round().to(torch.uint8)).reshape(len(x), -1)
        rgb = F.interpolate(rgb, size=(299, 299), mode="bilinear", align_corners=False, antialias=True)
        # The Inception weights expect inputs in [-1, 1] (what torchvision's transform_input=True produces).
        return self.net(rgb.mul(2).sub(1))  # (N, 2048)


def _has_torch_fidelity() -> bool:
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        return False
    return True


def _fidelity_inception(path: str) -> nn.Module:
    from torchmetrics.image.fid import NoTrainInceptionV3

    return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=path)


def _torchvision_inception(path: str) -> nn.Module:
    from torchvision.models import inception_v3

    net = inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith(("AuxLogits.", "fc."))}
    net.fc = nn.Identity()  # keep the 2048-d pool features
    net.load_state_dict(state)
    return net


@torch.inference_mode()
def extract_features(
    extractor: nn.Module, images: np.ndarray, batch_size: int = 256, device: torch.device | None = None
) -> torch.Tensor:
    """Features of uint8 images (N, H, W) in batches -> float32 (N, D) on the CPU."""
    device = device or next(extractor.parameters(), torch.empty(0)).device
    extractor.eval()
    out = [
        extractor(to_float(images[i : i + batch_size]).to(device)).float().cpu()  # (B, D)
        for i in range(0, len(images), batch_size)
    ]
    if not out:
        raise ValueError("no images to extract features from")
    return torch.cat(out)
