"""Generative quality of a synthetic image bank against real images: FID, KID, precision/recall, diversity.

FID and KID come from torchmetrics; precision / recall follow Kynkäänniemi et al. 2019
("Improved precision and recall metric for assessing generative models", k-NN manifolds);
diversity is the mean pairwise MS-SSIM inside a class (lower = more diverse), shown next to
the same figure for real images. All feature-based numbers use one named feature network.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn
from torchmetrics.image import MultiScaleStructuralSimilarityIndexMeasure, StructuralSimilarityIndexMeasure

# Imported from their modules: torchmetrics.image only re-exports them when torch-fidelity is
# installed, which a custom feature network does not need.
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from synthaug.data.imageset import ImageSet, to_float
from synthaug.metrics.features import FeatureExtractor, extract_features

log = logging.getLogger(__name__)
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, five scales
MS_SSIM_KERNEL = 7


class _Precomputed(nn.Module):
    """Identity "feature network" so torchmetrics' FID / KID run on features extracted once.

    Features are computed once per image set and shared by FID, KID, precision/recall and the
    per-class splits; passing the real network would re-run it for every class.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def fid_kid(
    real: torch.Tensor, fake: torch.Tensor, seed: int, kid_subsets: int = 50, kid_subset_size: int = 1000
) -> dict[str, float | None]:
    """FID and KID (mean, std over subsets) between feature sets real (Nr, D) and fake (Nf, D).

    KID subsets are drawn from torch's global generator inside a forked RNG seeded with ``seed``.
    Values are None when a set has fewer than two images.
    """
    if min(len(real), len(fake)) < 2:
        return {"fid": None, "kid_mean": None, "kid_std": None}
    module = _Precomputed(real.shape[1])
    fid = FrechetInceptionDistance(feature=module)
    fid.update(real.double(), real=True)
    fid.update(fake.double(), real=False)
    size = min(kid_subset_size, len(real), len(fake))
    with warnings.catch_warnings():  # "KID keeps all features in memory": intended, they are already in memory
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=module, subsets=kid_subsets, subset_size=size)
    kid.update(real.double(), real=True)
    kid.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    # Tiny negative FIDs are round-off of the matrix square root for (nearly) identical sets.
    fid_value = fid.compute()
    assert isinstance(fid_value, torch.Tensor)
    return {"fid": max(0.0, float(fid_value)), "kid_mean": float(kid_mean), "kid_std": float(kid_std)}


def knn_radii(x: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Distance from each row of x (N, D) to its k-th nearest other row -> (N,)."""
    out = []
    for i in range(0, len(x), chunk):
        d = torch.cdist(x[i : i + chunk], x)  # (c, N); the zero self-distance is the 1st value
        out.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(out)


def _coverage(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int) -> float:
    """Share of query rows inside the union of balls (support[j], radii[j])."""
    inside = []
    for i in range(0, len(queries), chunk):
        d = torch.cdist(queries[i : i + chunk], support)  # (c, Ns)
        inside.append((d <= radii[None, :]).any(dim=1))
    return float(torch.cat(inside).float().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3, chunk: int = 1024) -> dict[str, float | None]:
    """k-NN precision (fake inside the real manifold) and recall (real inside the fake manifold)."""
    if min(len(real), len(fake)) <= k:
        return {"precision": None, "recall": None}
    real, fake = real.double(), fake.double()  # float64 so an exact copy sits at distance 0
    precision = _coverage(fake, real, knn_radii(real, k, chunk), chunk)
    recall = _coverage(real, fake, knn_radii(fake, k, chunk), chunk)
    return {"precision": precision, "recall": recall}


def ms_ssim_settings(size: int) -> dict[str, Any]:
    """MS-SSIM scales for ``size`` px: as many of the five standard scales as leave ≥ kernel px at the coarsest.

    The standard 11-px kernel over five scales needs ≥ 176 px; at 64 px we keep four scales
    with a 7-px kernel (coarsest scale 8 px), betas renormalised to sum to one. Below two
    scales this is plain SSIM, and the result says so.
    """
    scales = 1
    # Second condition: torchmetrics' own size check for ``scales + 1`` betas.
    while scales < len(MS_SSIM_BETAS) and size // 2**scales >= MS_SSIM_KERNEL and size // scales**2 >= MS_SSIM_KERNEL:
        scales += 1
    betas = np.asarray(MS_SSIM_BETAS[:scales])
    return {
        "metric": "ms_ssim" if scales > 1 else "ssim",
        "kernel_size": MS_SSIM_KERNEL,
        "sigma": 1.5,
        "betas": tuple(float(b) for b in betas / betas.sum()),
    }


def mean_pairwise_ms_ssim(images: np.ndarray, seed: int, max_pairs: int = 200, batch: int = 64) -> float | None:
    """Mean MS-SSIM over up to ``max_pairs`` random distinct pairs of uint8 images (N, H, W); None if N < 2."""
    n = len(images)
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, max_pairs)
    j = (i + rng.integers(1, n, max_pairs)) % n  # j != i
    cfg = ms_ssim_settings(images.shape[-1])
    common = {"kernel_size": cfg["kernel_size"], "sigma": cfg["sigma"], "data_range": 2.0}
    metric = (
        MultiScaleStructuralSimilarityIndexMeasure(betas=cfg["betas"], **common)
        if cfg["metric"] == "ms_ssim"
        else StructuralSimilarityIndexMeasure(**common)
    )
    for s in range(0, max_pairs, batch):
        metric.update(to_float(images[i[s : s + batch]]), to_float(images[j[s : s + batch]]))  # (b, 1, H, W) each
    value = metric.compute()  # a scalar tensor: no per-image or contrast-sensitivity outputs were asked for
    assert isinstance(value, torch.Tensor)
    return float(value)


def _block(
    real_f: torch.Tensor,
    fake_f: torch.Tensor,
    real_img: np.ndarray,
    fake_img: np.ndarray,
    seed: int,
    k: int,
    max_pairs: int,
) -> dict[str, Any]:
    """All quality numbers for one real / synthetic pair of sets (a class, or everything)."""
    out: dict[str, Any] = {"n_real": len(real_f), "n_synthetic": len(fake_f)}
    out.update(fid_kid(real_f, fake_f, seed))
    out.update(precision_recall(real_f, fake_f, k))
    out["diversity_synthetic"] = mean_pairwise_ms_ssim(fake_img, seed, max_pairs)
    out["diversity_real"] = mean_pairwise_ms_ssim(real_img, seed, max_pairs)
    return out


def quality_report(
    real: ImageSet,
    synthetic: ImageSet,
    features: FeatureExtractor,
    seed: int,
    k: int = 3,
    max_pairs: int = 200,
    batch_size: int = 256,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Per-class and overall FID, KID, precision/recall and MS-SSIM diversity; JSON-ready.

    ``real`` is usually the real training split the generator learnt from. Overall diversity
    is the mean over classes (pairs are drawn within a class, never across).
    """
    if real.class_names != synthetic.class_names:
        raise ValueError(f"class names differ: real {real.class_names} vs synthetic {synthetic.class_names}")
    if real.size != synthetic.size:
        raise ValueError(f"image sizes differ: real {real.size} px vs synthetic {synthetic.size} px")
    real_f = extract_features(features, real.images, batch_size, device)  # (Nr, D)
    fake_f = extract_features(features, synthetic.images, batch_size, device)  # (Nf, D)
    per_class: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(real.class_names):
        r, f = real.labels == c, synthetic.labels == c
        if not f.any():
            continue
        per_class[name] = _block(real_f[r], fake_f[f], real.images[r], synthetic.images[f], seed + c, k, max_pairs)
        log.debug("quality %s: %s", name, per_class[name])  # one line per bank is logged by the stage
    overall = _block(real_f, fake_f, real.images[:0], synthetic.images[:0], seed, k, max_pairs)
    for key in ("diversity_synthetic", "diversity_real"):
        vals = [v[key] for v in per_class.values() if v[key] is not None]
        overall[key] = float(np.mean(vals)) if vals else None
    return {
        "feature_network": getattr(features, "name", type(features).__name__),
        "feature_dim": int(real_f.shape[1]),
        "seed": seed,
        "k": k,
        "diversity": {**ms_ssim_settings(real.size), "max_pairs": max_pairs, "lower_is_more_diverse": True},
        "overall": overall,
        "per_class": per_class,
    }
