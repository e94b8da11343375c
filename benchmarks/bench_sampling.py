"""Sampler cost and quality on one trained DDPM: DDPM-1000 vs DDIM-50 vs DPM-Solver++-20 (ODE and SDE).

    python benchmarks/bench_sampling.py [--size 16] [--steps 500] [--n 12] [--threads 1] [--grids docs/img]
        [--model PATH] [--samplers ddpm:1000,ddim:50,dpm++:20,dpm++sde:20]

Trains a small conditional DDPM on numpy-drawn shapes (3 classes: small disc, large disc, ring;
16 px by default, so DDPM-1000 stays within minutes on 2 shared CPU cores), then for each
sampler draws ``n`` images per class and reports denoiser evaluations per image (counted by a
forward hook, so guidance's doubled batch would show), images/s, and three quality figures
against held-out real images of the same class: RMS distance of the mean images, total-variation
distance of the intensity histograms, and mean nearest-neighbour RMS distance.
A held-out-real vs training-real row gives the scale of "as good as real".
``--model PATH`` keeps the trained model: the first run writes it, later runs load it and only
sample (to compare samplers or step counts without training again).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from synthaug.config.generators import DDPMConfig
from synthaug.data.imageset import ImageSet, to_float, to_uint8
from synthaug.generators import fit
from synthaug.generators.base import Generator, load_generator
from synthaug.generators.training import write_grid

SAMPLERS = "ddpm:1000,ddim:50,dpm++:20,dpm++sde:20"
NAMES = ("small_disc", "large_disc", "ring")


def shapes(n_per_class: int, size: int, seed: int) -> ImageSet:
    """Discs and rings with jittered centre, radius and brightness on a noisy dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    images, labels = [], []
    for c in range(3):
        for _ in range(n_per_class):
            k = size / 32  # shapes scale with the image
            cy, cx = size / 2 + rng.uniform(-3, 3, 2) * k
            r = np.hypot(yy - cy, xx - cx)
            radius = (rng.uniform(3, 5), rng.uniform(8, 11), rng.uniform(9, 11))[c] * k
            inside = (r < radius) & ((c != 2) | (r > radius - max(2.0, 3 * k)))
            img = 25 + rng.normal(0, 6, (size, size)) + inside * rng.uniform(170, 220)
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(c)
    ids = np.array([f"shape{i:04d}" for i in range(len(labels))], dtype=object)
    return ImageSet(np.stack(images), np.array(labels, np.int64), ids, NAMES)


def quality(fake: np.ndarray, real: np.ndarray) -> tuple[float, float, float]:
    """(mean-image RMS, histogram TV distance, mean nearest-neighbour RMS), uint8 units for RMS."""
    f, r = fake.astype(np.float32), real.astype(np.float32)
    mean_rms = float(np.sqrt(((f.mean(0) - r.mean(0)) ** 2).mean()))
    bins = np.linspace(0, 256, 33)
    hf, hr = np.histogram(f, bins)[0] / f.size, np.histogram(r, bins)[0] / r.size
    tv = float(0.5 * np.abs(hf - hr).sum())
    d = ((f.reshape(len(f), 1, -1) - r.reshape(1, len(r), -1)) ** 2).mean(-1)  # (n_fake, n_real)
    return mean_rms, tv, float(np.sqrt(d.min(1)).mean())


def draw(gen: Generator, sampler: str, steps: int, n: int) -> tuple[list[np.ndarray], float, float]:
    """Images per class, denoiser evaluations per image, images/s.

    All classes go in one batch (3n rows) through the conditional network: on a CPU the UNet's
    per-call overhead, not the batch, dominates, so per-class calls would triple DDPM-1000's time.
    """
    rows = [0]
    net, _ = gen.net_for(0, 1)
    hook = net.register_forward_hook(lambda m, args, out: rows.__setitem__(0, rows[0] + len(args[0])))
    labels = torch.arange(3).repeat_interleave(n)  # (3n,)
    start = time.perf_counter()
    with torch.no_grad():
        x = gen.generate(net, labels, 3 * n, torch.Generator().manual_seed(1000), gen.options(sampler, steps, None))
    seconds = time.perf_counter() - start
    hook.remove()
    images = to_uint8(x)
    return [images[labels.numpy() == c] for c in range(3)], rows[0] / (3 * n), 3 * n / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=500, help="training steps")
    ap.add_argument("--n", type=int, default=12, help="images per class per sampler")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--grids", type=Path, default=None, help="write gen_*.png sample grids here")
    ap.add_argument("--model", type=Path, default=None, help="load the trained model here, or save it here")
    ap.add_argument("--samplers", default=SAMPLERS, help="comma-separated sampler:steps")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    train, held_out = shapes(64, args.size, seed=0), shapes(args.n, args.size, seed=1)
    cfg = DDPMConfig(
        preset="cpu",
        device="cpu",
        image_size=args.size,
        steps=args.steps,
        batch_size=32,
        lr=1e-3,
        checkpoint_every=10**9,
        sample_every=0,
        ddpm={
            "block_out_channels": (16, 32, 32),
            "layers_per_block": 1,
            "ema_decay": 0.995,
            "warmup_steps": 50,
            "guidance": args.guidance,
        },
    )
    if args.model and args.model.exists():
        gen = load_generator(args.model, device="cpu")
        print(f"loaded {args.model} (trained {gen.cfg.steps} steps)")
    else:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            gen = fit(train, cfg, tmp, seed=0)
        print(
            f"trained {args.steps} steps (batch 32, {args.size} px, UNet (16, 32, 32)) "
            f"in {time.perf_counter() - start:.0f} s"
        )
        if args.model:
            args.model.parent.mkdir(parents=True, exist_ok=True)
            gen.save(args.model)
    real = [held_out.images[held_out.labels == c] for c in range(3)]
    ref = np.mean([quality(train.images[train.labels == c][: args.n], real[c]) for c in range(3)], axis=0)
    print(f"{'sampler':<14}{'evals/img':>10}{'img/s':>8}{'mean RMS':>10}{'hist TV':>9}{'NN RMS':>8}")
    print(f"{'real (ref)':<14}{'-':>10}{'-':>8}{ref[0]:>10.2f}{ref[1]:>9.3f}{ref[2]:>8.2f}")
    if args.grids:
        write_grid(to_float(np.concatenate([r[:8] for r in real])), args.grids / "gen_real_shapes.png", nrow=8)
    for spec in args.samplers.split(","):
        sampler, steps_text = spec.split(":")
        steps = int(steps_text)
        images, evals, ips = draw(gen, sampler, steps, args.n)
        q = np.mean([quality(images[c], real[c]) for c in range(3)], axis=0)
        label = f"{sampler}-{steps}"
        print(f"{label:<14}{evals:>10.0f}{ips:>8.2f}{q[0]:>10.2f}{q[1]:>9.3f}{q[2]:>8.2f}")
        if args.grids:
            grid = to_float(np.concatenate([im[:8] for im in images]))
            write_grid(grid, args.grids / f"gen_{sampler.replace('+', 'p')}_{steps}.png", nrow=8)


if __name__ == "__main__":
    main()
