"""Phantom generator throughput: batched (the library) vs one image per call (reference), same run.

python benchmarks/bench_phantoms.py [--n 4000] [--size 64]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from synthaug.data import phantoms


def _rate(fn, n: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    batched = _rate(lambda: phantoms.generate(args.n, args.size, seed=0), args.n)
    n_ref = 200
    labels = torch.as_tensor(np.arange(n_ref) % 4)
    g = torch.Generator().manual_seed(0)
    # Reference: the same renderer, one image per call (what a per-image loop would cost).
    ref = _rate(
        lambda: [phantoms._draw_batch(labels[i : i + 1], args.size, phantoms.CLASSES, g) for i in range(n_ref)], n_ref
    )
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    print(
        f"phantoms {args.size}px: batched {batched:,.0f} img/s;",
        f"one-per-call reference {ref:,.0f} img/s; ratio {batched / ref:.1f}x",
    )


if __name__ == "__main__":
    main()
