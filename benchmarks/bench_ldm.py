"""Latent vs pixel diffusion on this machine: training and sampling throughput, fp32 vs bf16 autocast.

    python benchmarks/bench_ldm.py [--size 64] [--threads 2] [--seconds 20] [--sample-n 16]

Measured in one run, alternating (a warm-up step first, then as many steps as fit in --seconds):
- training images/s of the pixel DDPM UNet (CPU preset), the ldm autoencoder and the ldm latent
  UNet (CPU preset), each in fp32 and under CPU bf16 autocast;
- sampling images/s with dpm++sde-20 (ldm: decode included), guidance 1.5;
- peak RSS of the process (ru_maxrss) at the end.
Goals (docs/BENCHMARKS.md): latent UNet >= 5x the pixel UNet's training images/s, sampling >= 5x.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import resource
import time

import numpy as np
import torch

from synthaug.config.generators import parse_generator
from synthaug.data.imageset import ImageSet
from synthaug.generators.ddpm import DDPMGenerator
from synthaug.generators.ldm import AutoencoderTrainer, LDMGenerator


def _timed(step, batch: int, seconds: float) -> float:  # type: ignore[no-untyped-def]
    step()  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        n += 1
    return n * batch / (time.perf_counter() - start)


def _ctx(bf16: bool) -> contextlib.AbstractContextManager:  # type: ignore[type-arg]
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--sample-n", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device("cpu")
    s = args.size
    ddpm = parse_generator({"family": "ddpm", "preset": "cpu", "device": "cpu", "image_size": s}).resolve()
    ldm = parse_generator({"family": "ldm", "preset": "cpu", "device": "cpu", "image_size": s}).resolve()
    b = int(ddpm.batch_size or 32)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(b, 1, s, s, generator=g) * 2 - 1
    y = torch.randint(0, 4, (b,), generator=g)
    pixel = DDPMGenerator.make_trainer(ddpm, 4, dev)
    ae = AutoencoderTrainer(ldm.ldm, s, dev)
    latent = LDMGenerator.make_trainer(ldm, 4, dev)
    factor = ldm.ldm.latent_factor
    z = torch.randn(b, ldm.ldm.latent_channels, s // factor, s // factor, generator=g)
    rows = []
    phases = (("pixel DDPM UNet", pixel, x), ("ldm autoencoder", ae, x), ("ldm latent UNet", latent, z))
    for name, trainer, data in phases:
        for bf16 in (False, True):

            def step(trainer=trainer, data=data, bf16=bf16) -> None:  # type: ignore[no-untyped-def]
                with _ctx(bf16):
                    trainer.step(data, y, g)

            rows.append((name, "bf16" if bf16 else "fp32", _timed(step, b, args.seconds)))
    # Sampling: dpm++sde-20 with guidance (two network calls per step), decode included for ldm.
    names = ("a", "b", "c", "d")
    imgs = ImageSet(np.zeros((4, s, s), np.uint8), np.arange(4), np.array(list(names), dtype=object), names)
    pix_gen = DDPMGenerator(ddpm, imgs.class_names, s, {"all": pixel.export()})
    from synthaug.generators.ldm import AUTOENCODER

    ldm_gen = LDMGenerator(ldm, imgs.class_names, s, {AUTOENCODER: ae.export(), "all": latent.export()})
    sampling = []
    for name, gen in (("pixel DDPM", pix_gen), ("ldm (decode included)", ldm_gen)):
        for bf16 in (False, True):

            def draw(gen=gen, bf16=bf16) -> None:  # type: ignore[no-untyped-def]
                with _ctx(bf16), torch.no_grad():
                    gen.sample(0, args.sample_n, rng=1, sampler="dpm++sde", steps=20, guidance=1.5)

            sampling.append((name, "bf16" if bf16 else "fp32", _timed(draw, args.sample_n, args.seconds)))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} threads, {s} px, batch {b}")
    print("training images/s:")
    ref = rows[0][2]
    for name, prec, ips in rows:
        print(f"  {name:<18} {prec}  {ips:8.1f}   x{ips / ref:5.2f} of pixel fp32")
    print("sampling images/s (dpm++sde, 20 steps, guidance 1.5):")
    ref = sampling[0][2]
    for name, prec, ips in sampling:
        print(f"  {name:<22} {prec}  {ips:8.2f}   x{ips / ref:5.2f} of pixel fp32")
    print(f"peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
