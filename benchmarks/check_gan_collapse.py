"""Does the conditional GAN use its noise code? Per-pixel spread of samples within a class.

    python benchmarks/check_gan_collapse.py [--steps 1000] [--grids docs/img]
    python benchmarks/check_gan_collapse.py --generator RUN/generator.pt ...   # trained checkpoints only

Three classes of numpy-drawn shapes (the sampling benchmark's small disc / large disc / ring,
64 per class, 32 px), GAN networks (32, 64, 128), LSGAN, batch 32, one thread. For each variant:
the per-pixel standard deviation across 32 samples of a class (grey levels, mean over pixels
and classes; a generator that ignores z scores near 0) next to the same figure for 32 real
images. Variants: the plain conditional GAN; the same unconditional on one class (large disc);
the conditional GAN with the mode-seeking term at 0.1 (the default) and 1.0, with minibatch
std and DiffAugment (the defaults). ``--generator`` instead prints the same figure for trained
generator checkpoints (any family), 32 samples per class.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from synthaug.config.generators import GANConfig
from synthaug.generators.base import load_generator
from synthaug.generators.gan import GANTrainer
from synthaug.generators.training import write_grid

try:
    from bench_sampling import shapes
except ImportError:  # run from the repository root
    from benchmarks.bench_sampling import shapes

PLAIN = {"mode_seeking": 0.0, "minibatch_std": False, "diffaugment": []}
DEFAULTS: dict = {}  # the config defaults (mode seeking 0.1, minibatch std, DiffAugment)
VARIANTS = {
    "conditional, plain": (True, PLAIN),
    "unconditional (large disc), plain": (False, PLAIN),
    "conditional, defaults (mode seeking 0.1)": (True, DEFAULTS),
    "conditional, mode seeking 1.0": (True, {"mode_seeking": 1.0}),
}


def run(conditional: bool, gan: dict, steps: int) -> tuple[np.ndarray, list[float]]:
    data = shapes(64, 32, seed=0)
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 127.5 - 1  # (192, 1, 32, 32)
    y = torch.tensor(data.labels)
    if not conditional:
        x, y = x[y == 1], None
    cfg = GANConfig(
        preset="cpu",
        device="cpu",
        image_size=32,
        steps=steps,
        batch_size=32,
        gan={"channels": (32, 64, 128), "z_dim": 64, "loss": "lsgan", "spectral_norm": False, **gan},
    ).resolve()
    torch.manual_seed(0)
    trainer = GANTrainer(cfg, 3 if conditional else None, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(len(x), (32,), generator=gen)
        trainer.step(x[idx], None if y is None else y[idx], gen)
    trainer.g.eval()
    classes = [0, 1, 2] if conditional else [None]
    stds, grid = [], []
    with torch.no_grad():
        for c in classes:
            labels = None if c is None else torch.full((32,), c)
            fake = trainer.g(torch.randn(32, 64, generator=gen), labels)  # (32, 1, 32, 32) in [-1, 1]
            stds.append(float((fake * 127.5).std(dim=0).mean()))
            grid.append(fake[:8])
    return torch.cat(grid).numpy(), stds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--grids", type=Path, default=None, help="write gan_collapse_*.png grids here")
    ap.add_argument("--generator", type=Path, nargs="*", default=None, help="checkpoints to measure instead")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.generator:
        for path in args.generator:
            gen = load_generator(path, device="cpu")
            stds = [gen.sample(c, 32, 0).astype(np.float32).std(axis=0).mean() for c in range(len(gen.class_names))]
            print(f"{path}: per-pixel std across 32 samples per class {' / '.join(f'{s:.1f}' for s in stds)}")
        return
    data = shapes(64, 32, seed=0)
    real = [data.images[data.labels == c][:32].astype(np.float32).std(axis=0).mean() for c in range(3)]
    print(f"{'variant':<44}{'std per class':>22}{'seconds':>9}")
    print(f"{'real images':<44}{' / '.join(f'{s:.1f}' for s in real):>22}{'-':>9}")
    for i, (name, (conditional, gan)) in enumerate(VARIANTS.items()):
        start = time.perf_counter()
        grid, stds = run(conditional, gan, args.steps)
        print(f"{name:<44}{' / '.join(f'{s:.1f}' for s in stds):>22}{time.perf_counter() - start:>9.0f}", flush=True)
        if args.grids:
            write_grid(torch.from_numpy(grid), args.grids / f"gan_collapse_{i}.png", nrow=8)


if __name__ == "__main__":
    main()
