"""DDPM training throughput vs a plain diffusers training step, and peak memory (RSS).

    python benchmarks/bench_ddpm_train.py [--size 64] [--batch 16] [--steps 15] [--rounds 3] [--threads 1]
                                          [--memory-only]

Throughput: ``train_loop`` with our ``DDPMTrainer`` (EMA, clipping, cosine LR, label dropout, loss
CSV, checkpoint at the end) against the bare loop from the diffusers training example on the
same UNet, batch and data, alternated over rounds in one run; best round of each is reported.
Memory: peak RSS of a fresh subprocess that trains a few steps / samples a few images at 64 px
(CPU preset networks) and 128 px (GPU preset networks).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from synthaug.config.generators import DDPMConfig
from synthaug.generators.ddpm import DDPMGenerator, DDPMTrainer
from synthaug.generators.samplers import train_scheduler
from synthaug.generators.training import train_loop

log = logging.getLogger("bench_ddpm_train")


def config(size: int, batch: int, steps: int, preset: str = "cpu") -> DDPMConfig:
    return DDPMConfig(
        preset=preset,
        device="cpu",
        image_size=size,
        batch_size=batch,
        steps=steps,
        checkpoint_every=10**9,
        sample_every=0,
    ).resolve()


def ours(cfg: DDPMConfig, x: torch.Tensor, y: torch.Tensor, work: Path) -> float:
    """Seconds for ``cfg.steps`` steps of the project's training loop."""
    torch.manual_seed(0)
    trainer = DDPMTrainer(cfg, 3, torch.device("cpu"))
    start = time.perf_counter()
    train_loop(trainer, x, y, cfg, work, seed=0, resume=False, grid=lambda: x[:1])
    return time.perf_counter() - start


def plain(cfg: DDPMConfig, x: torch.Tensor, y: torch.Tensor) -> float:
    """Seconds for the same number of bare diffusers-example steps (no EMA, clipping, schedule, logs)."""
    torch.manual_seed(0)
    unet = DDPMGenerator.build_net(cfg, 3)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    sched = train_scheduler()
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(cfg.steps or 0):
        idx = torch.randint(len(x), (cfg.batch_size or 1,), generator=gen)
        x0, noise = x[idx], torch.randn((cfg.batch_size or 1, *x.shape[1:]), generator=gen)
        t = torch.randint(0, 1000, (len(x0),), generator=gen)
        pred = unet(sched.add_noise(x0, noise, t), t, class_labels=y[idx]).sample
        loss = F.mse_loss(pred, noise)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return time.perf_counter() - start


def peak_rss(what: str, size: int, preset: str, threads: int) -> float:
    """Peak RSS (MiB) of a fresh process that only imports, trains 2 steps (batch 8), or samples
    4 images (DPM++ 20); the import-only figure is the baseline the others include."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        what,
        "--size",
        str(size),
        "--preset",
        preset,
        "--threads",
        str(threads),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"])


def child(what: str, size: int, preset: str) -> None:
    cfg = config(size, 8, 2, preset)
    x, y = torch.rand(64, 1, size, size) * 2 - 1, torch.arange(64) % 3
    if what == "import":
        pass
    elif what == "train":
        with tempfile.TemporaryDirectory() as tmp:
            train_loop(DDPMTrainer(cfg, 3, torch.device("cpu")), x, y, cfg, Path(tmp), 0, False, lambda: x[:1])
    else:
        gen = DDPMGenerator(cfg, ("a", "b", "c"), size, {"all": DDPMGenerator.build_net(cfg, 3)})
        gen.sample(0, 4, rng=0, sampler="dpm++", steps=20)
    print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--child", choices=["import", "train", "sample"])
    ap.add_argument("--memory-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        return child(args.child, args.size, args.preset)
    logging.basicConfig(level=logging.WARNING)
    if not args.memory_only:
        throughput(args)
    for size, preset in ((64, "cpu"), (128, "gpu")):
        base, train, sample = (peak_rss(w, size, preset, args.threads) for w in ("import", "train", "sample"))
        print(
            f"  peak RSS {size}px ({preset} preset UNet, batch 8): imports only {base:.0f} MiB, "
            f"train {train:.0f} MiB, sample {sample:.0f} MiB"
        )


def throughput(args: argparse.Namespace) -> None:
    cfg = config(args.size, args.batch, args.steps)
    x, y = torch.rand(256, 1, args.size, args.size) * 2 - 1, torch.arange(256) % 3
    t_ours, t_plain = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            t_plain.append(plain(cfg, x, y))
            t_ours.append(ours(cfg, x, y, Path(tmp) / f"r{r}"))
    n = args.steps * args.batch
    ips_ours, ips_plain = n / min(t_ours), n / min(t_plain)
    print(f"training {args.size}px batch {args.batch} UNet {cfg.ddpm.block_out_channels} threads {args.threads}")
    print(f"  ours (train_loop + DDPMTrainer): {ips_ours:.1f} images/s   rounds s: {[round(t, 2) for t in t_ours]}")
    print(f"  plain diffusers step:            {ips_plain:.1f} images/s   rounds s: {[round(t, 2) for t in t_plain]}")
    print(f"  ratio ours/plain: {ips_ours / ips_plain:.3f}")


if __name__ == "__main__":
    main()
