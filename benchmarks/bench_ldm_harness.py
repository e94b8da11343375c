"""The ldm latent phase through synthaug's training harness vs a bare diffusers-style loop, and
peak memory of ldm training and sampling at 64 and 128 px.

    python benchmarks/bench_ldm_harness.py [--threads 1] [--steps 60] [--repeats 3]

Harness: ``LDMGenerator.make_trainer`` + ``training.train_loop`` (batches from a seeded
generator, loss CSV, the non-finite guard, a checkpoint with RNG states at the end) on
pre-encoded latents of the CPU preset (16×16×4 at 64 px). Bare: the loop of diffusers'
``train_unconditional.py`` example written out for the same network (``unet_for``), schedule,
AdamW, cosine LR with warm-up, gradient clipping, label dropout and diffusers' ``EMAModel``.
Alternating repeats, the same steps and batch; steps/s per repeat, medians and their ratio.
Goal (docs/BENCHMARKS.md): harness / bare >= 0.9.

Peak RSS: a fresh Python per figure (``ru_maxrss`` of the child): ``--steps`` training steps of
each ldm phase at 64 and 128 px (the CPU preset's networks, batch 32), and drawing 32 images with
dpm++sde-20 (decode included).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def _preset(size: int):  # type: ignore[no-untyped-def]
    from synthaug.config.generators import parse_generator

    raw = {"family": "ldm", "preset": "cpu", "device": "cpu", "image_size": size, "sample_every": 0}
    return parse_generator(raw).resolve()


def harness(steps: int, seed: int = 0) -> float:
    from synthaug.generators.ldm import LDMGenerator
    from synthaug.generators.training import train_loop

    cfg = _preset(64).model_copy(update={"steps": steps, "checkpoint_every": steps})
    f = cfg.ldm.latent_factor
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(512, cfg.ldm.latent_channels, 64 // f, 64 // f, generator=g)
    y = torch.randint(0, 4, (512,), generator=g)
    trainer = LDMGenerator.make_trainer(cfg, 4, torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train_loop(trainer, z, y, cfg, Path(tmp), seed, False, lambda: torch.zeros(1, 1, 8, 8))
        return steps / (time.perf_counter() - start)


def bare(steps: int, seed: int = 0) -> float:
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    from synthaug.generators.ddpm import unet_for

    cfg = _preset(64)
    d, f, b = cfg.ldm, cfg.ldm.latent_factor, int(cfg.batch_size or 32)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(512, d.latent_channels, 64 // f, 64 // f, generator=g)
    y = torch.randint(0, 4, (512,), generator=g)
    torch.manual_seed(seed)
    model = unet_for(d, 64 // f, d.latent_channels, 4)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg.lr or 2e-4), weight_decay=d.weight_decay)
    lr = get_cosine_schedule_with_warmup(opt, d.warmup_steps, int(cfg.steps or steps))
    ema = EMAModel(model.parameters(), decay=d.ema_decay)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(len(z), (b,), generator=g)
        x0, labels = z[idx], y[idx]
        labels = torch.where(torch.rand(b, generator=g) < d.cfg_dropout, torch.full_like(labels, 4), labels)
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (b,), generator=g)
        pred = model(sched.add_noise(x0, noise, t), t, class_labels=labels).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), d.grad_clip)
        opt.step()
        lr.step()
        ema.step(model.parameters())
        float(loss.detach())  # the harness reads each loss (CSV, non-finite guard): so does the bare loop
    return steps / (time.perf_counter() - start)


def rss_child(what: str, size: int, steps: int) -> None:
    """In a fresh process: train one phase ``steps`` steps, or draw 32 images; print peak RSS (MiB)."""
    from synthaug.generators.ldm import AUTOENCODER, AutoencoderTrainer, LDMGenerator

    cfg = _preset(size)
    d, f, b = cfg.ldm, cfg.ldm.latent_factor, int(cfg.batch_size or 32)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (b,), generator=g)
    if what == "autoencoder":
        ae = AutoencoderTrainer(d, size, torch.device("cpu"))
        x = torch.rand(b, 1, size, size, generator=g) * 2 - 1
        for _ in range(steps):
            ae.step(x, None, g)
    elif what == "unet":
        trainer = LDMGenerator.make_trainer(cfg, 4, torch.device("cpu"))
        z = torch.randn(b, d.latent_channels, size // f, size // f, generator=g)
        for _ in range(steps):
            trainer.step(z, y, g)
    else:
        ae = AutoencoderTrainer(d, size, torch.device("cpu"))
        unet = LDMGenerator.make_trainer(cfg, 4, torch.device("cpu"))
        gen = LDMGenerator(cfg, ("a", "b", "c", "d"), size, {AUTOENCODER: ae.export(), "all": unet.export()})
        with torch.no_grad():
            gen.sample(0, 32, rng=0, sampler="dpm++sde", steps=20, guidance=1.5)
    print(json.dumps({"rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rss-child", nargs=3, metavar=("WHAT", "SIZE", "STEPS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]), int(args.rss_child[2]))
        return
    h, bl = [], []
    harness(5)  # warm-up (allocator, oneDNN kernels)
    bare(5)
    for _ in range(args.repeats):
        h.append(harness(args.steps))
        bl.append(bare(args.steps))
    mh, mb = statistics.median(h), statistics.median(bl)
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} thread(s), latent 16x16x4, batch 32")
    print(f"harness steps/s {[round(v, 2) for v in h]} median {mh:.2f}")
    print(f"bare    steps/s {[round(v, 2) for v in bl]} median {mb:.2f}")
    print(f"harness / bare = {mh / mb:.3f}")
    for size in (64, 128):
        for what in ("autoencoder", "unet", "sample"):
            cmd = [sys.executable, __file__, "--threads", str(args.threads), "--rss-child", what, str(size), "3"]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            print(f"peak RSS {what:<11} {size:>3} px: {json.loads(out)['rss_mib']:7.0f} MiB")


if __name__ == "__main__":
    main()
