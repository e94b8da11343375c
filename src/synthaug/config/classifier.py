"""Typed classifier configuration: which network (with its options) and how to train it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from synthaug.config.base import StrictModel

# Classifier registry names -> the module whose import registers the builder (loaded on first use,
# so a config validates without torch). synthaug.classifiers.registry.register_model adds to it.
CLASSIFIERS: dict[str, str] = {
    "cnn": "synthaug.classifiers.cnn",
    "resnet18": "synthaug.classifiers.resnet",
    "vit": "synthaug.classifiers.vit",
}


class CNNOptions(StrictModel):
    channels: tuple[int, int] = Field((32, 64), description="output channels of the two conv layers")
    hidden: tuple[int, int] = Field((256, 128), description="widths of the two hidden FC layers")
    dropout: float = Field(0.3, ge=0, lt=1)
    batch_norm: bool = True
    pooled_size: int = Field(8, ge=1, description="adaptive pool side before the FC head")


class ResNetOptions(StrictModel):
    mode: Literal["scratch", "finetune", "frozen"] = Field(
        "scratch", description="scratch, finetune (ImageNet init) or frozen (ImageNet init, only fc trains)"
    )
    weights_path: str | None = Field(None, description="local ImageNet state dict; None downloads IMAGENET1K_V1")
    stem: Literal["auto", "imagenet", "small"] = Field("auto", description="small = 3x3 conv, no max-pool (scratch)")


class ViTOptions(StrictModel):
    patch_size: int | None = Field(None, ge=1, description="None: image_size // 8 (8 at 64 px, 16 at 128 px)")
    embed_dim: int = Field(128, ge=8)
    depth: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    mlp_ratio: float = Field(2.0, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)


class ModelConfig(StrictModel):
    """The network: ``name`` is a registry key; the section named like it holds its options."""

    name: str = Field("cnn", description="classifier registry key: cnn, resnet18, vit")
    cnn: CNNOptions = CNNOptions()
    resnet18: ResNetOptions = ResNetOptions()
    vit: ViTOptions = ViTOptions()

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        known = sorted(CLASSIFIERS)
        if name not in known:
            raise ValueError(f"unknown classifier {name!r}; available: {known}")
        return name

    def options(self) -> dict[str, Any]:
        """Keyword options for ``create_model`` (empty for a registered model without a section here)."""
        section = getattr(self, self.name, None)
        return section.model_dump() if isinstance(section, StrictModel) else {}

    def label(self) -> str:
        """Name used in results and cell ids, e.g. ``cnn`` or ``resnet18-frozen``."""
        if self.name == "resnet18" and self.resnet18.mode != "scratch":
            return f"resnet18-{self.resnet18.mode}"
        return self.name


class TrainConfig(StrictModel):
    epochs: int = Field(30, ge=1, description="maximum epochs (early stopping may end sooner)")
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(256, ge=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    scheduler: Literal["cosine", "step", "none"] = "cosine"
    step_size: int = Field(10, ge=1, description="step scheduler: epochs between decays")
    gamma: float = Field(0.1, gt=0, le=1, description="step scheduler: decay factor")
    patience: int = Field(5, ge=0, description="epochs without val-loss improvement before stopping; 0 = never stop")
    min_delta: float = Field(0.0, ge=0, description="val-loss decrease that counts as an improvement")
    class_weights: bool = Field(False, description="weight cross-entropy by inverse class frequency")
    channels_last: bool = Field(True, description="channels_last memory format; faster on CPU (docs/BENCHMARKS.md)")
    cpu_bf16: bool = Field(
        False,
        description="bf16 autocast for the training forward pass on CPU (evaluation stays fp32); needs a CPU with "
        "native bf16 (AVX512-BF16 / AMX), refused on others; see docs/BENCHMARKS.md",
    )
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads for the cell; None keeps torch's default. Use 1 on a busy CPU"
    )


class ClassifierConfig(StrictModel):
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
