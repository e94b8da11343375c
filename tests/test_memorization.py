"""Memorization check: a planted copy is flagged, independent real images are not."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from synthaug.data.imageset import ImageSet
from synthaug.data.phantoms import generate
from synthaug.metrics.features import EncoderFeatures
from synthaug.metrics.memorization import exact_copies, memorization_report, nearest_neighbours, unit_rows


@pytest.fixture(scope="module")
def data() -> tuple[ImageSet, ImageSet, ImageSet]:
    """Train split, a baseline half of the test split and an independent 'synthetic' half.

    720 baseline images put the 1st percentile near the 7th smallest distance, so the expected
    flagged share of independent images (1% per measure, ≤ 2% for either) sits many standard
    deviations below the 5% bound; with 200 it rests on two order statistics and wobbles.
    """
    full = generate(2400, 32, seed=11, test_fraction=0.6)
    test = full.split("test")
    half = len(test) // 2
    return full.split("train"), test.subset(np.arange(half)), test.subset(np.arange(half, len(test)))


def _features() -> EncoderFeatures:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1))
    return EncoderFeatures(net, features_fn=lambda m, x: m(x), name="random-cnn")


def test_nearest_neighbours_match_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    q, b = torch.randn(37, 5, generator=g), torch.randn(53, 5, generator=g)
    d, i = nearest_neighbours(q, b, "l2", chunk=8)
    ref = torch.cdist(q, b).min(dim=1)
    torch.testing.assert_close(d, ref.values, atol=1e-4, rtol=1e-4)
    assert torch.equal(i, ref.indices)
    imgs = np.random.default_rng(0).integers(0, 256, (20, 8, 8)).astype(np.uint8)
    d, i = nearest_neighbours(unit_rows(imgs[:5]), unit_rows(imgs[5:]), "correlation", chunk=2)
    r = np.corrcoef(imgs.reshape(20, -1).astype(float))[:5, 5:]
    np.testing.assert_allclose(d.numpy(), 1 - r.max(axis=1), atol=1e-5)
    with pytest.raises(ValueError, match="metric"):
        nearest_neighbours(q, b, "cosine")  # type: ignore[arg-type]


def test_independent_images_are_not_flagged(data: tuple[ImageSet, ImageSet, ImageSet]) -> None:
    train, baseline, independent = data
    report = memorization_report(train, baseline, independent, _features(), percentile=1.0)
    assert report.summary["exact_copies"] == 0
    assert report.summary["flagged_share"] <= 0.05
    for m in ("pixel", "feature"):
        assert report.summary["measures"][m]["flagged_share"] <= 0.05


def test_planted_copies_are_flagged(data: tuple[ImageSet, ImageSet, ImageSet]) -> None:
    train, baseline, independent = data
    # One exact copy, one copy with mild noise (a near-copy must be caught by the distances, not the hash).
    jitter = np.random.default_rng(0).integers(-2, 3, train.images[7].shape)
    noisy = np.clip(train.images[7].astype(int) + jitter, 0, 255)
    planted = ImageSet(
        images=np.stack([train.images[3], noisy.astype(np.uint8)]),
        labels=train.labels[[3, 7]],
        ids=np.array(["copy_of_3", "near_copy_of_7"], dtype=object),
        class_names=train.class_names,
    )
    synthetic = ImageSet.concat([independent, planted])
    report = memorization_report(train, baseline, synthetic, _features(), percentile=1.0, top_pairs=4)
    rows = report.per_image.set_index("id")
    assert rows.loc["copy_of_3", "flagged"] and rows.loc["copy_of_3", "exact_copy_of"] == train.ids[3]
    assert rows.loc["near_copy_of_7", "pixel_flag"] and rows.loc["near_copy_of_7", "feature_flag"]
    assert rows.loc["near_copy_of_7", "pixel_nn_id"] == train.ids[7]
    closest = report.summary["measures"]["pixel"]["closest_pairs"]
    assert {p["synthetic_id"] for p in closest[:2]} == {"copy_of_3", "near_copy_of_7"}
    assert report.summary["copied_train_share"] >= 2 / len(train)
    json.dumps(report.summary)


def test_pixel_only_without_features(data: tuple[ImageSet, ImageSet, ImageSet]) -> None:
    train, baseline, independent = data
    report = memorization_report(train, baseline, independent.subset(np.arange(20)), None)
    assert set(report.summary["measures"]) == {"pixel"} and report.summary["feature_network"] is None
    assert len(report.per_image) == 20
    with pytest.raises(ValueError, match="percentile"):
        memorization_report(train, baseline, independent, None, percentile=0)


def test_exact_copies_index() -> None:
    imgs = np.random.default_rng(1).integers(0, 256, (6, 4, 4)).astype(np.uint8)
    assert exact_copies(imgs[:4], imgs[[2, 5, 0]]).tolist() == [2, -1, 0]
