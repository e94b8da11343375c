"""Memorization: is a synthetic image a copy of a training image (a patient's scan)?

For every synthetic image we find its nearest training image by (1) pixel correlation
(distance 1 - Pearson r of the flattened images) and (2) L2 distance between features. The
yardstick is how close *independent* real images come to the training set: the nearest
distances of the real test images to the training images (the baseline). A synthetic image is
flagged when it is closer to a training image than the ``percentile``-th percentile of that
baseline by either measure, or when its pixels equal a training image's exactly.

Nearest neighbours are found with chunked matrix products (torch), never per image.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from synthaug.data.imageset import ImageSet
from synthaug.metrics.features import FeatureExtractor, extract_features

log = logging.getLogger(__name__)
Metric = Literal["correlation", "l2"]


@dataclass(frozen=True)
class Memorization:
    """``summary``: JSON-ready dict for quality.json; ``per_image``: one row per synthetic image (flags)."""

    summary: dict[str, Any]
    per_image: pd.DataFrame


def unit_rows(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) -> float32 (N, H*W) rows with zero mean and unit norm, so a dot product is Pearson r.

    A constant image has no defined correlation; its row is all zeros (r = 0 with everything).
    """
    x = torch.as_tensor(images).reshape(len(images), -1).float()  # (N, P)
    x = x - x.mean(dim=1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def nearest_neighbours(
    queries: torch.Tensor, bank: torch.Tensor, metric: Metric, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest bank row for each query row: (distance (Q,), index (Q,)).

    ``correlation`` expects :func:`unit_rows` inputs and returns 1 - r; ``l2`` returns Euclidean distance.
    """
    if metric not in ("correlation", "l2"):
        raise ValueError(f"metric must be 'correlation' or 'l2', got {metric!r}")
    bank_sq = bank.pow(2).sum(dim=1)  # (B,)
    dist, index = [], []
    for i in range(0, len(queries), chunk):
        q = queries[i : i + chunk]  # (c, D)
        sim = q @ bank.T  # (c, B)
        if metric == "correlation":
            best, idx = sim.max(dim=1)
            dist.append((1.0 - best).clamp_min(0.0))
        else:
            d2 = q.pow(2).sum(dim=1, keepdim=True) + bank_sq[None, :] - 2.0 * sim  # (c, B)
            best, idx = d2.min(dim=1)
            dist.append(best.clamp_min(0.0).sqrt())
        index.append(idx)
    return torch.cat(dist), torch.cat(index)


def _digests(images: np.ndarray) -> list[bytes]:
    return [hashlib.blake2b(np.ascontiguousarray(im).tobytes(), digest_size=16).digest() for im in images]


def exact_copies(train: np.ndarray, synthetic: np.ndarray) -> np.ndarray:
    """Index of a training image with identical pixels for each synthetic image, -1 where none -> (Ns,)."""
    first: dict[bytes, int] = {}
    for i, h in enumerate(_digests(train)):
        first.setdefault(h, i)
    return np.array([first.get(h, -1) for h in _digests(synthetic)], dtype=np.int64)


def _measure(
    train: torch.Tensor, test: torch.Tensor, synth: torch.Tensor, metric: Metric, percentile: float, chunk: int
) -> tuple[dict[str, float], np.ndarray, np.ndarray, np.ndarray]:
    """Baseline (test->train) threshold and median, and synthetic nearest distances / indices / flags."""
    base, _ = nearest_neighbours(test, train, metric, chunk)  # (Nt,)
    baseline = {
        "threshold": float(torch.quantile(base.double(), percentile / 100.0)),
        "baseline_median_distance": float(base.median()),
    }
    dist, idx = nearest_neighbours(synth, train, metric, chunk)  # (Ns,)
    dist, idx = dist.cpu(), idx.cpu()
    return baseline, dist.numpy(), idx.numpy(), (dist < baseline["threshold"]).numpy()


def _closest_pairs(frame: pd.DataFrame, prefix: str, top: int) -> list[dict[str, Any]]:
    rows = frame.nsmallest(top, f"{prefix}_distance")
    return [
        {
            "synthetic_id": str(r["id"]),
            "train_id": str(r[f"{prefix}_nn_id"]),
            "class": str(r["class"]),
            "distance": float(r[f"{prefix}_distance"]),
            "flagged": bool(r["flagged"]),
        }
        for _, r in rows.iterrows()
    ]


def memorization_report(
    train: ImageSet,
    test: ImageSet,
    synthetic: ImageSet,
    features: FeatureExtractor | None,
    percentile: float = 1.0,
    top_pairs: int = 16,
    chunk: int = 1024,
    device: torch.device | None = None,
) -> Memorization:
    """Flag synthetic images that sit closer to a training image than independent test images do.

    Args:
        train / test: real training split (what the generator saw) and the real test split (baseline).
        synthetic: the synthetic bank; features: feature network, or None for the pixel measure only.
        percentile: baseline percentile used as threshold (1.0 = closer than 99% of real test images).
        device: where features are extracted and neighbours searched (default: the feature network's / CPU).
            Pixel rows take N × H·W float32 each (5,000 images at 64 px: 82 MB).
    """
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must lie in (0, 100), got {percentile}")
    if len(train) == 0 or len(test) == 0 or len(synthetic) == 0:
        raise ValueError(f"need images in train ({len(train)}), test ({len(test)}) and synthetic ({len(synthetic)})")
    frame = pd.DataFrame({"id": synthetic.ids.astype(str), "label": synthetic.labels})
    frame["class"] = [synthetic.class_names[c] for c in synthetic.labels]
    spaces: dict[str, tuple[Metric, torch.Tensor, torch.Tensor, torch.Tensor]] = {
        "pixel": ("correlation", unit_rows(train.images), unit_rows(test.images), unit_rows(synthetic.images))
    }
    if features is not None:
        tr, te, sy = (extract_features(features, s.images, device=device) for s in (train, test, synthetic))  # (N, D)
        spaces["feature"] = ("l2", tr, te, sy)
    baselines: dict[str, dict[str, float]] = {}
    for name, (metric, tr, te, sy) in spaces.items():
        if device is not None:  # the searches are matrix products: run them where the features live
            tr, te, sy = tr.to(device), te.to(device), sy.to(device)
        baselines[name], dist, idx, flag = _measure(tr, te, sy, metric, percentile, chunk)
        frame[f"{name}_distance"], frame[f"{name}_flag"] = dist, flag
        frame[f"{name}_nn_id"] = train.ids[idx].astype(str)
    copy_idx = exact_copies(train.images, synthetic.images)
    frame["exact_copy_of"] = np.where(copy_idx >= 0, train.ids[np.maximum(copy_idx, 0)].astype(str), "")
    frame["flagged"] = (copy_idx >= 0) | np.any([frame[f"{m}_flag"] for m in spaces], axis=0)
    summary = _summary(frame, baselines, train, len(test), percentile, top_pairs)
    summary["feature_network"] = None if features is None else getattr(features, "name", type(features).__name__)
    log.info("memorization: %.2f%% of %d synthetic images flagged", 100 * summary["flagged_share"], len(synthetic))
    return Memorization(summary, frame)


def _summary(
    frame: pd.DataFrame,
    baselines: dict[str, dict[str, float]],
    train: ImageSet,
    n_test: int,
    percentile: float,
    top: int,
) -> dict[str, Any]:
    """JSON-ready figures per measure and overall from the per-image table."""
    measures: dict[str, Any] = {}
    copied: set[str] = set(frame.loc[frame["exact_copy_of"] != "", "exact_copy_of"])
    for name, baseline in baselines.items():
        flag = frame[f"{name}_flag"].to_numpy()
        nn_ids = set(frame.loc[flag, f"{name}_nn_id"])
        copied |= nn_ids
        measures[name] = {
            "distance": "1 - pearson_r" if name == "pixel" else "l2",
            **baseline,
            "synthetic_median_distance": float(frame[f"{name}_distance"].median()),
            "flagged_share": float(flag.mean()),
            "copied_train_share": len(nn_ids) / len(train),
            "closest_pairs": _closest_pairs(frame, name, top),
        }
    per_class = frame.groupby("class", sort=False)["flagged"].mean()
    return {
        "percentile": percentile,
        "n_train": len(train),
        "n_baseline_test": n_test,
        "n_synthetic": len(frame),
        "exact_copies": int((frame["exact_copy_of"] != "").sum()),
        "flagged_share": float(frame["flagged"].mean()),
        "copied_train_share": len(copied) / len(train),
        "flagged_share_per_class": {str(k): float(v) for k, v in per_class.items()},
        "measures": measures,
    }
