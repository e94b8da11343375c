"""Memorization check wall time: 2,000 synthetic images vs 5,000 training images at 64 px (phantoms).

    PYTHONPATH=src python benchmarks/bench_memorization.py [--train 5000 --bank 2000 --test 1000 --size 64]

The check (pixel-correlation and feature nearest neighbours for the bank and for the test
baseline, exact-copy hashes, summary) is timed against references measured in the same run on
subsets and extrapolated: (1) a per-pair loop (``np.corrcoef`` of one synthetic and one
training image at a time), (2) a per-image loop (one numpy matrix-vector product per synthetic
image). The references' nearest neighbours are checked against the chunked search.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from synthaug.data.phantoms import generate
from synthaug.metrics.features import EncoderFeatures
from synthaug.metrics.memorization import memorization_report, nearest_neighbours, unit_rows

log = logging.getLogger("bench_memorization")
T = TypeVar("T")


def encoder() -> EncoderFeatures:
    """A small untrained CNN with the shape of an in-domain encoder (64-d pooled features)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
    )
    return EncoderFeatures(net, features_fn=lambda m, x: m(x), name="bench-cnn")


def per_pair_loop(bank: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Reference 1: nearest training index by Pearson r, one np.corrcoef per (synthetic, train) pair."""
    flat_t = train.reshape(len(train), -1).astype(np.float64)
    out = []
    for img in bank.reshape(len(bank), -1).astype(np.float64):
        out.append(int(np.argmax([np.corrcoef(img, t)[0, 1] for t in flat_t])))
    return np.array(out)


def per_image_loop(bank: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Reference 2: nearest training index by Pearson r, one numpy matrix-vector product per synthetic image."""
    t = train.reshape(len(train), -1).astype(np.float32)
    t = (t - t.mean(1, keepdims=True)) / np.linalg.norm(t - t.mean(1, keepdims=True), axis=1, keepdims=True)
    out = []
    for img in bank.reshape(len(bank), -1).astype(np.float32):
        q = img - img.mean()
        out.append(int(np.argmax(t @ (q / np.linalg.norm(q)))))
    return np.array(out)


def timed(fn: Callable[..., T], *args: Any) -> tuple[T, float]:
    t = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=5000)
    ap.add_argument("--bank", type=int, default=2000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    real = generate(args.train + args.test, args.size, seed=0, test_fraction=args.test / (args.train + args.test))
    train, test = real.split("train"), real.split("test")
    bank = generate(args.bank, args.size, seed=1, test_fraction=0)  # stands in for a synthetic bank
    log.info("%d train, %d test, %d bank at %d px; %d CPUs, torch threads %d",
             len(train), len(test), len(bank), args.size, os.cpu_count(), torch.get_num_threads())  # fmt: skip

    report, t_full = timed(memorization_report, train, test, bank, encoder())
    (_, nn_idx), t_pixel = timed(nearest_neighbours, unit_rows(bank.images), unit_rows(train.images), "correlation")
    n1, n2 = 3, 100
    ref1, t_ref1 = timed(per_pair_loop, bank.images[:n1], train.images)
    ref2, t_ref2 = timed(per_image_loop, bank.images[:n2], train.images)
    assert np.array_equal(ref1, nn_idx[:n1].numpy()) and np.array_equal(ref2, nn_idx[:n2].numpy())
    est1, est2 = t_ref1 * len(bank) / n1, t_ref2 * len(bank) / n2
    log.info("memorization_report (pixel + feature, bank and baseline, hashes): %.1f s", t_full)
    log.info("  chunked pixel nearest-neighbour search of the bank alone: %.2f s", t_pixel)
    log.info("reference per-pair np.corrcoef loop: %.2f s for %d images -> %.0f s for the bank (%.0fx slower)",
             t_ref1, n1, est1, est1 / t_pixel)  # fmt: skip
    log.info("reference per-image numpy mat-vec loop: %.2f s for %d images -> %.1f s for the bank (%.1fx slower)",
             t_ref2, n2, est2, est2 / t_pixel)  # fmt: skip
    shares = {m: v["flagged_share"] for m, v in report.summary["measures"].items()}
    log.info(
        "flagged share of the (independent) bank: %.4f overall, per measure %s", report.summary["flagged_share"], shares
    )


if __name__ == "__main__":
    main()
