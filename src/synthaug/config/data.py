"""Where the images come from and how they are prepared (the ``data:`` section)."""

from __future__ import annotations

from pydantic import Field

from synthaug.config.base import StrictModel


class PhantomConfig(StrictModel):
    """The built-in phantom dataset (used when ``data.source`` is ``phantom``)."""

    n: int = Field(1200, ge=8, description="number of images (train + test)")
    seed: int = 0
    imbalance: dict[str, float] | None = Field(None, description="class -> relative weight, e.g. {pituitary: 0.1}")
    rare_class: bool = Field(False, description="add a fifth, 'metastasis' class")
    test_fraction: float = Field(0.2, gt=0, lt=1)


class LeakageConfig(StrictModel):
    """Which test images count as leaked copies of training images (see data/audit.py)."""

    remove_test_duplicates: bool = Field(True, description="drop test images that duplicate a training image")
    near_duplicates: bool = Field(True, description="also drop perceptual near-duplicates, not only exact copies")
    phash_max_distance: int = Field(8, ge=0, le=64)
    min_correlation: float = Field(0.99, gt=0, le=1)


class DataConfig(StrictModel):
    source: str = Field("phantom", description="'phantom', an image folder, a parquet file/folder, or hf:<id>")
    size: int = Field(64, ge=16, le=1024, description="side of the square one-channel images models see")
    class_names: list[str] | None = Field(None, description="names for integer labels (parquet without names)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="held-out share when the source has no test split")
    val_fraction: float = Field(0.15, gt=0, lt=1, description="validation share carved from training data")
    phantom: PhantomConfig = PhantomConfig()
    leakage: LeakageConfig = LeakageConfig()
    cache_dir: str | None = Field(None, description="preprocessed-data cache (default ~/.cache/synthaug)")
    workers: int | None = Field(None, ge=1, description="decoding processes (default: CPU count, at most 8)")
