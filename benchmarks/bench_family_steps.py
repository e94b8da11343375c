"""Seconds per training step of each generator family's CPU preset on this machine, to give the
families the same core-minutes (configs/brain-tumor-families.yaml sizes its steps from these).

    python benchmarks/bench_family_steps.py [--threads 1] [--seconds 12] [--size 64]

One process, random images in [-1, 1] and random labels (the step's cost does not depend on them), the
preset's batch size; a warm-up step, then as many steps as fit in --seconds. ``ldm`` is timed per phase
(the autoencoder, then the latent UNet on the autoencoder's latents), fp32 and with ``cpu_bf16``. On a
CPU without native bf16 (AVX512-BF16 / AMX) a study refuses ``cpu_bf16``; this script times the emulated
path anyway, marked "emulated", to show why.
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import Any

import torch

from synthaug import device
from synthaug.config.generators import parse_generator
from synthaug.generators import generator_class
from synthaug.generators.ldm import AutoencoderTrainer, LDMGenerator


def seconds_per_step(trainer: Any, x: torch.Tensor, y: torch.Tensor, seconds: float) -> float:
    g = torch.Generator().manual_seed(0)
    trainer.step(x, y, g)  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        trainer.step(x, y, g)
        n += 1
    return (time.perf_counter() - start) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev, s = torch.device("cpu"), args.size
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), {s} px")
    print("| family / phase | batch | s per step | images/s |\n|---|---|---|---|")

    def row(name: str, trainer: Any, batch: int, shape: tuple[int, int, int] = (1, s, s)) -> None:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(batch, *shape, generator=g) * 2 - 1  # images in [-1, 1] (latents: same scale)
        y = torch.randint(0, 4, (batch,), generator=g)
        sps = seconds_per_step(trainer, x, y, args.seconds)
        print(f"| {name} | {batch} | {sps:.3f} | {batch / sps:.1f} |", flush=True)

    for fam in ("vae", "gan", "ddpm"):
        cfg = parse_generator({"family": fam, "preset": "cpu", "device": "cpu", "image_size": s}).resolve()
        row(fam, generator_class(fam).make_trainer(cfg, 4, dev), int(cfg.batch_size or 32))
    native = device.cpu_has_native_bf16()
    device.cpu_has_native_bf16 = lambda: True  # type: ignore[assignment]  # time the emulated path too
    for bf16 in (False, True):
        cfg = parse_generator(
            {"family": "ldm", "preset": "cpu", "device": "cpu", "image_size": s, "ldm": {"cpu_bf16": bf16}}
        ).resolve()
        tag = (" (cpu_bf16)" if native else " (cpu_bf16, emulated: no native bf16)") if bf16 else ""
        b = int(cfg.batch_size or 32)
        ae = AutoencoderTrainer(cfg.ldm, s, dev)
        side = s // cfg.ldm.latent_factor
        row(f"ldm autoencoder{tag}", ae, b)
        row(f"ldm UNet{tag}", LDMGenerator.make_trainer(cfg, 4, dev), b, (cfg.ldm.latent_channels, side, side))


if __name__ == "__main__":
    main()
