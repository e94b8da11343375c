"""Where the images come from and how they are prepared (the ``data:`` section)."""

from __future__ import annotations

import re

from pydantic import Field, model_validator

from synthaug.config.base import StrictModel


class PhantomConfig(StrictModel):
    """The built-in phantom dataset (used when ``data.source`` is ``phantom``)."""

    n: int = Field(1200, ge=8, description="number of images (train + test)")
    seed: int = 0
    imbalance: dict[str, float] | None = Field(None, description="class -> relative weight, e.g. {pituitary: 0.1}")
    rare_class: bool = Field(False, description="add a fifth, 'metastasis' class")
    test_fraction: float = Field(0.2, gt=0, lt=1)
    lesion_scale: float = Field(
        1.0, gt=0, le=4, description="lesion size multiplier (> 1: larger lesions, an easier task at small sizes)"
    )
    lesion_contrast: float = Field(1.0, gt=0, le=4, description="lesion contrast multiplier (> 1: an easier task)")


class LeakageConfig(StrictModel):
    """Which test images count as leaked copies of training images (see data/audit.py)."""

    remove_test_duplicates: bool = Field(True, description="drop test images that duplicate a training image")
    near_duplicates: bool = Field(True, description="also drop perceptual near-duplicates, not only exact copies")
    phash_max_distance: int = Field(8, ge=0, le=64)
    min_correlation: float = Field(0.99, gt=0, le=1)


class GroupsConfig(StrictModel):
    """Which images belong to one patient (or scan): at most one of ``column``, ``csv``, ``regex``.

    Every split (test when synthaug makes it, validation, real-fraction subsets) keeps a group
    whole. Near-duplicate groups found by the audit are always joined to them, so copies of one
    slice never straddle a split either; with no source here they are the only groups.
    """

    column: str | None = Field(None, description="parquet column holding the patient / group id")
    csv: str | None = Field(None, description="CSV file with columns file,group (file: the image's path or name)")
    regex: str | None = Field(
        None, description="regular expression over each image's path; its first capture group (or match) is the group"
    )

    @model_validator(mode="after")
    def _one_source(self) -> GroupsConfig:
        given = [k for k in ("column", "csv", "regex") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError(f"data.groups: give one of column, csv or regex, not {given}")
        if self.regex:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"data.groups.regex {self.regex!r} is not a valid regular expression: {exc}") from exc
        return self

    @property
    def given(self) -> bool:
        return bool(self.column or self.csv or self.regex)


class DataConfig(StrictModel):
    source: str = Field("phantom", description="'phantom', an image folder, a parquet file/folder, or hf:<id>")
    size: int = Field(64, ge=16, le=1024, description="side of the square one-channel images models see")
    class_names: list[str] | None = Field(None, description="names for integer labels (parquet without names)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="held-out share when the source has no test split")
    val_fraction: float = Field(0.15, gt=0, lt=1, description="validation share carved from training data")
    phantom: PhantomConfig = PhantomConfig()
    leakage: LeakageConfig = LeakageConfig()
    groups: GroupsConfig = GroupsConfig()
    cache_dir: str | None = Field(None, description="preprocessed-data cache (default ~/.cache/synthaug)")
    workers: int | None = Field(None, ge=1, description="decoding processes (default: CPU count, at most 8)")
