"""Settings of the quality stage (judges, FID / precision / recall, memorization, TSTR) and of Grad-CAM."""

from __future__ import annotations

from pydantic import Field, field_validator

from synthaug.config.base import StrictModel


class ExplainConfig(StrictModel):
    """Grad-CAM of the study's classifiers on real vs synthetic images (the explain stage)."""

    enabled: bool = True
    per_class: int = Field(4, ge=1, description="real and synthetic images per class that are explained and shown")
    policies: list[str] | None = Field(
        None,
        description="policy labels whose classifiers are explained (None: the study baseline); one classifier "
        "per model and policy, at the largest real fraction and the first seed, to keep the stage cheap",
    )
    tolerance: int = Field(2, ge=0, description="pointing game: px the lesion mask is dilated by")


class QualityConfig(StrictModel):
    """Quality, memorization, TSTR and filtering scores of every synthetic bank (the quality stage)."""

    enabled: bool = True
    encoder_model: str = Field(
        "cnn",
        description="network of the judge classifier trained on each cell's real data: in-domain feature "
        "encoder, TRTR classifier and filtering judge. A registry name, or the label of a study model "
        "(its options are used)",
    )
    epochs: int | None = Field(
        None, ge=1, description="epoch cap for the judge and TSTR classifiers (None: train.epochs)"
    )
    inception_weights: str | None = Field(
        None, description="local Inception-v3 weights file; when set, quality is also measured in Inception features"
    )
    max_images_per_bank: int | None = Field(
        1000, ge=8, description="images per set (bank, real) FID/KID/precision/recall/MS-SSIM use (None: all)"
    )
    percentile: float = Field(
        1.0,
        gt=0,
        lt=100,
        description="memorization: flag images closer to a training image than this percentile of real test images",
    )
    top_pairs: int = Field(8, ge=1, description="closest synthetic/training pairs recorded and shown per bank")
    taus: list[float] = Field(
        default_factory=lambda: [0.5, 0.8, 0.9], description="judge confidences at which kept counts are reported"
    )
    tstr: bool = Field(True, description="train on synthetic, test on real, next to train on real (TRTR)")
    tstr_fractions: list[float] | None = Field(
        None, description="real fractions whose banks get TSTR (None: the largest only, to bound CPU cost)"
    )
    tstr_seeds: list[int] | None = Field(None, description="seeds whose banks get TSTR (None: the first only)")
    explain: ExplainConfig = ExplainConfig()

    @field_validator("taus")
    @classmethod
    def _taus(cls, value: list[float]) -> list[float]:
        if any(not 0 <= t <= 1 for t in value):
            raise ValueError(f"confidence thresholds must lie in [0, 1], got {value}")
        return sorted(value)
