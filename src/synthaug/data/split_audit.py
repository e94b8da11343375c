"""An audit of the split itself: is validation much closer to the training images than test is?

Validation images that are near copies of training images (another slice of the same scan, a
re-saved file) make early stopping and model selection reward memorisation. Per cell, for every
validation and every test image, the Pearson correlation (32×32 block means, as in the
duplicate rule) with its nearest training image; a warning when validation holds clearly more
near copies than test does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synthaug.data.audit import unit_rows
from synthaug.data.imageset import ImageSet

LEAK_MARGIN = 0.05  # validation's share of near copies may exceed test's by this much before a warning


def nearest_correlation(query: np.ndarray, reference: np.ndarray, chunk: int = 512) -> np.ndarray:
    """For each row of ``query`` (N, D), its largest dot product with a row of ``reference`` (M, D) -> (N,)."""
    if len(query) == 0 or len(reference) == 0:
        return np.zeros(len(query), np.float32)
    return np.concatenate([(query[i : i + chunk] @ reference.T).max(axis=1) for i in range(0, len(query), chunk)])


def split_audit(fit: ImageSet, val: ImageSet, test: ImageSet, copy_correlation: float) -> dict[str, Any]:
    """Nearest-training-image correlations of validation and test images, and whether validation leaks."""
    train_rows = unit_rows(fit.images)
    val_r = nearest_correlation(unit_rows(val.images), train_rows)
    test_r = nearest_correlation(unit_rows(test.images), train_rows)

    def share(r: np.ndarray) -> float:
        return float((r >= copy_correlation).mean()) if len(r) else 0.0

    val_copies, test_copies = share(val_r), share(test_r)
    record: dict[str, Any] = {
        "val_max_correlation": float(val_r.max()) if len(val_r) else None,
        "test_max_correlation": float(test_r.max()) if len(test_r) else None,
        "val_median_nearest": float(np.median(val_r)) if len(val_r) else None,
        "test_median_nearest": float(np.median(test_r)) if len(test_r) else None,
        "val_near_copies": val_copies,
        "test_near_copies": test_copies,
        "copy_correlation": copy_correlation,
        "leak": val_copies > test_copies + LEAK_MARGIN,
    }
    return record
