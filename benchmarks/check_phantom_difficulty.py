"""Is the phantom task hard enough? A small CNN trained on 200 phantom images, tested on 1,000.

    python benchmarks/check_phantom_difficulty.py [--seeds 3] [--epochs 40] [--n-train 200]

A plain PyTorch loop (two conv + ReLU + max-pool layers, two hidden FC layers, Adam), so the
check does not depend on the study harness. Reports test accuracy per seed.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

from synthaug.data.imageset import to_float
from synthaug.data.phantoms import generate


def small_cnn(num_classes: int, size: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * (size // 4) ** 2, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
        nn.Linear(64, num_classes),
    )  # fmt: skip


def run(seed: int, epochs: int, n_train: int = 200, size: int = 64) -> float:
    data = generate(n_train + 1000, size, seed=100 + seed, test_fraction=1000 / (n_train + 1000))
    train, test = data.split("train"), data.split("test")
    torch.manual_seed(seed)
    model = small_cnn(data.num_classes, size)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = to_float(train.images), torch.as_tensor(train.labels)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=g).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(to_float(test.images)).argmax(1).numpy()
    return float((pred == test.labels).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--n-train", type=int, default=200)
    args = ap.parse_args()
    accs = [run(s, args.epochs, args.n_train) for s in range(args.seeds)]
    print(
        f"train {args.n_train} phantom images (64 px), test 1000:",
        ", ".join(f"{a:.3f}" for a in accs),
        f"mean {np.mean(accs):.3f}",
    )


if __name__ == "__main__":
    main()
