"""Classifier training throughput: the harness loop against a minimal plain PyTorch loop.

For each model and resolution, the same network is trained on the same random uint8 batches
by ``synthaug.classifiers.train.train_one_epoch`` and by a bare reference loop written here;
both are timed in the same process, interleaved, best of ``--repeats``. The ratio
harness / reference is the figure of merit (goal >= 0.9).

    python benchmarks/bench_classifier.py                      # all models at 64 and 128 px
    python benchmarks/bench_classifier.py --threads 1          # one torch thread (a busy, shared CPU)
    python benchmarks/bench_classifier.py --options            # also channels_last and threads at 64 px
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable

import torch
from torch import nn

from synthaug.classifiers import create_model
from synthaug.classifiers.train import train_one_epoch
from synthaug.data.imageset import to_float

log = logging.getLogger("bench_classifier")
CPU = torch.device("cpu")


def reference_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch: int,
    channels_last: bool,
) -> None:
    """The smallest honest training loop: same scaling, same loss, same optimizer, fixed order."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for b in range(0, len(images), batch):
        x = to_float(images[b : b + batch]).contiguous(memory_format=fmt)  # (B, 1, H, W) in [-1, 1]
        loss = loss_fn(model(x), labels[b : b + batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def best_rate(run: Callable[[], None], n_images: int, repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = max(best, n_images / (time.perf_counter() - start))
    return best


def measure(name: str, size: int, batch: int, steps: int, repeats: int, channels_last: bool = True) -> dict:
    """images/s of harness and reference for one model at one size (interleaved, best of repeats)."""
    gen = torch.Generator().manual_seed(0)
    n = batch * steps
    images = torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 4, (n,), generator=gen)
    torch.manual_seed(0)  # benchmark init only
    model = create_model(name, 4, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    def harness() -> None:
        train_one_epoch(model, opt, loss_fn, images, labels, batch, CPU, gen, channels_last=channels_last)

    def reference() -> None:
        reference_epoch(model, opt, images, labels, batch, channels_last)

    reference_epoch(model, opt, images[: 2 * batch], labels[: 2 * batch], batch, channels_last)  # warm-up
    ref = harn = 0.0
    for _ in range(repeats):  # interleave so drift in machine load hits both alike
        ref = max(ref, best_rate(reference, n, 1))
        harn = max(harn, best_rate(harness, n, 1))
    return {"model": name, "size": size, "batch": batch, "harness": harn, "reference": ref, "ratio": harn / ref}


def option_sweep(batch: int, steps: int, repeats: int, max_threads: int) -> None:
    """channels_last and thread count for the convolutional models at 64 px (harness loop)."""
    for name in ("cnn", "resnet18"):
        for threads in sorted({1, max_threads}):
            torch.set_num_threads(threads)
            for cl in (False, True):
                r = measure(name, 64, batch, steps, repeats, channels_last=cl)
                log.info("%-9s 64px threads=%d channels_last=%-5s harness %7.1f img/s", name, threads, cl, r["harness"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cnn", "resnet18", "vit"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2, help="batches per timed epoch")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--options", action="store_true", help="also sweep channels_last and threads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    max_threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    log.info("torch %s, %d threads, channels_last, CPU", torch.__version__, torch.get_num_threads())
    log.info("| model | px | batch | harness img/s | reference img/s | ratio |")
    log.info("|---|---|---|---|---|---|")
    start = time.perf_counter()
    for name in args.models:
        for size in args.sizes:
            r = measure(name, size, args.batch, args.steps, args.repeats)
            log.info(
                "| %s | %d | %d | %.1f | %.1f | %.2f |",
                r["model"], r["size"], r["batch"], r["harness"], r["reference"], r["ratio"],
            )  # fmt: skip
    if args.options:
        option_sweep(args.batch, args.steps, args.repeats, max_threads)
    log.info("total %.0f s", time.perf_counter() - start)


if __name__ == "__main__":
    main()
