"""A small vision transformer (timm) for one-channel images that trains on a CPU at 64-128 px."""

from __future__ import annotations

from timm.models.vision_transformer import VisionTransformer
from torch import nn

from synthaug.classifiers.registry import register_model


@register_model("vit")
def build_vit(
    num_classes: int,
    image_size: int,
    *,
    pretrained: bool = True,
    patch_size: int | None = None,
    embed_dim: int = 128,
    depth: int = 4,
    num_heads: int = 4,
    mlp_ratio: float = 2.0,
    dropout: float = 0.1,
) -> nn.Module:
    """timm ``VisionTransformer`` with ``in_chans=1`` (trained from scratch; ``pretrained`` is ignored).

    patch_size None picks ``image_size // 8`` (8 px at 64, 16 px at 128): always an 8x8 grid of
    64 tokens, which keeps attention cheap on a CPU.
    """
    patch = patch_size or max(2, image_size // 8)
    if image_size % patch:
        raise ValueError(f"vit: image_size {image_size} is not a multiple of patch_size {patch}")
    if embed_dim % num_heads:
        raise ValueError(f"vit: embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
    return VisionTransformer(
        img_size=image_size,
        patch_size=patch,
        in_chans=1,
        num_classes=num_classes,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
        drop_rate=dropout,
        class_token=True,
        global_pool="token",
    )
