"""Two ideas for cutting a many-seed study's classifier time, measured rather than assumed: CPU bf16
autocast for the training step, and training K seeds' models at once with
``torch.func.stack_module_state`` + ``vmap`` (one batched call instead of K small ones).

    python benchmarks/bench_classifier_cuts.py [--model cnn] [--size 64] [--batch 32] [--k 4] [--threads 1]

All figures are training images per second (forward, backward, Adam step) of one process with
``--threads`` torch threads, best of ``--repeats`` after a warm-up, measured in one run so the ratios
compare like with like. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import copy
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from synthaug.classifiers import create_model


def rate(step: Callable[[], None], images: int, steps: int, repeats: int) -> float:
    step()  # warm-up
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        best = max(best, images * steps / (time.perf_counter() - t))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cnn")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--k", type=int, default=4, help="models trained at once with vmap (seeds)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.randn(a.batch, 1, a.size, a.size)  # (B, 1, S, S)
    y = torch.randint(0, 4, (a.batch,))
    models = [create_model(a.model, 4, a.size) for _ in range(a.k)]

    def plain(model: nn.Module, opt: torch.optim.Optimizer, bf16: bool) -> Callable[[], None]:
        def step() -> None:
            model.train()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    m32 = copy.deepcopy(models[0])
    fp32 = rate(plain(m32, torch.optim.Adam(m32.parameters(), 1e-3), False), a.batch, a.steps, a.repeats)
    m16 = copy.deepcopy(models[0])
    bf16 = rate(plain(m16, torch.optim.Adam(m16.parameters(), 1e-3), True), a.batch, a.steps, a.repeats)

    # K models, each on its own batch (as K seeds would be), in one vmapped call per step.
    params, buffers = stack_module_state(models)  # type: ignore[arg-type]
    base = copy.deepcopy(models[0]).to("meta")
    leaves = list(params.values())
    for t in leaves:
        t.requires_grad_(True)
    opt = torch.optim.Adam(leaves, 1e-3)
    xs, ys = x.expand(a.k, *x.shape).clone(), y.expand(a.k, *y.shape).clone()  # (K, B, 1, S, S), (K, B)

    def one(p: dict, b: dict, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    batched = vmap(one, randomness="different")

    def stacked() -> None:
        base.train()
        loss = batched(params, buffers, xs, ys).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    try:
        vm = rate(stacked, a.k * a.batch, a.steps, a.repeats)
    except Exception as exc:  # e.g. a layer vmap cannot batch (in-place BatchNorm running stats)
        vm = float("nan")
        print(f"vmap: not possible for {a.model}: {type(exc).__name__}: {str(exc)[:200]}")
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {a.threads} thread(s), "
          f"{a.model} {a.size} px, batch {a.batch}")  # fmt: skip
    print("| training step | images/s | vs fp32 |\n|---|---|---|")
    print(f"| fp32, one model | {fp32:.1f} | 1.00 |")
    print(f"| bf16 autocast, one model | {bf16:.1f} | {bf16 / fp32:.2f} |")
    print(f"| fp32, {a.k} models in one vmap call (images of all {a.k}) | {vm:.1f} | {vm / fp32:.2f} |")


if __name__ == "__main__":
    main()
