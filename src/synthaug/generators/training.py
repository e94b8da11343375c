"""The loop around a family's optimisation step: batches, progress, loss CSV, sample grids,
atomic checkpoints with RNG states (so ``resume`` continues exactly), and the non-finite guard.
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import torch
from PIL import Image
from torch import Tensor, nn
from torchvision.utils import make_grid
from tqdm.auto import tqdm

from synthaug.config.generators import GeneratorConfig, parse_generator, upgrade_generator_dict
from synthaug.data.imageset import to_uint8
from synthaug.io import atomic_write, save_torch

log = logging.getLogger(__name__)
CHECKPOINT = "train_state.pt"


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss or weights; the last good checkpoint is kept."""


class Trainer(Protocol):
    """One family's optimisation state; owns its optimisers and its update rule."""

    nets: dict[str, nn.Module]

    def step(self, x: Tensor, y: Tensor | None, gen: torch.Generator) -> dict[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def export(self) -> nn.Module: ...


class EMA:
    """Exponential moving average of a module's weights (the weights diffusion samples with)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        # Warm-up (1 + n) / (10 + n): early averages are not dominated by the random init.
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_p: list[Tensor] = list(self.model.parameters())
        p: list[Tensor] = [q.detach() for q in model.parameters()]
        torch._foreach_lerp_(ema_p, p, 1.0 - decay)
        for eb, b in zip(self.model.buffers(), model.buffers(), strict=True):
            eb.copy_(b)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


def check_finite(losses: dict[str, float], step: int, checkpoint: Path) -> None:
    """Stop with a message naming the step and the checkpoint that is kept."""
    bad = {k: v for k, v in losses.items() if not torch.isfinite(torch.tensor(v))}
    if bad:
        kept = f"last good checkpoint kept at {checkpoint}" if checkpoint.exists() else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"non-finite loss at step {step}: {bad}; {kept}. Lower the learning rate or check the data for NaNs."
        )


def write_grid(images: Tensor, path: Path, nrow: int = 4) -> None:
    """Save (N, 1, S, S) images in [-1, 1] as one PNG grid, atomically."""
    grid = make_grid(images.float().clamp(-1, 1), nrow=nrow, padding=2, pad_value=-1.0)  # (3, H', W')
    arr = to_uint8(grid[:1].unsqueeze(0))[0]  # (H', W') uint8
    atomic_write(path, lambda p: Image.fromarray(arr).save(p))


def _save_checkpoint(
    path: Path,
    trainer: Trainer,
    step: int,
    history: list[dict[str, float]],
    gens: dict[str, torch.Generator],
    cfg: GeneratorConfig,
    seed: int,
) -> None:
    for name, net in trainer.nets.items():
        if not all(torch.isfinite(t).all() for t in net.state_dict().values() if t.is_floating_point()):
            raise NonFiniteLossError(
                f"non-finite weights in '{name}' at step {step}; last good checkpoint kept at {path}"
            )
    state = {
        "step": step,
        "seed": seed,
        "config": cfg.model_dump(mode="json"),
        "trainer": trainer.state_dict(),
        "history": history,
        "rng": {k: g.get_state() for k, g in gens.items()} | {"torch": torch.get_rng_state()},
    }
    save_torch(path, state)
    atomic_write(path.parent / "loss.csv", lambda p: pd.DataFrame(history).to_csv(p, index=False))


def _restore(
    path: Path, trainer: Trainer, gens: dict[str, torch.Generator], cfg: GeneratorConfig, seed: int
) -> tuple[int, list[dict[str, float]]]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = parse_generator(upgrade_generator_dict(state["config"])).model_dump(mode="json")  # defaults of new keys
    if saved != cfg.model_dump(mode="json") or state["seed"] != seed:
        raise ValueError(
            f"cannot resume from {path}: it was written with another config or seed; "
            "use a new run directory or resume=False"
        )
    trainer.load_state_dict(state["trainer"])
    for k, g in gens.items():
        g.set_state(state["rng"][k])
    torch.set_rng_state(state["rng"]["torch"])
    log.info("resumed %s at step %d", path, state["step"])
    return int(state["step"]), list(state["history"])


def train_loop(
    trainer: Trainer,
    x: Tensor,
    y: Tensor | None,
    cfg: GeneratorConfig,
    work_dir: Path,
    seed: int,
    resume: bool,
    grid: Callable[[], Tensor],
) -> int:
    """Run ``trainer.step`` on random batches of ``x`` (N, 1, S, S) until ``cfg.steps``; return the step."""
    work_dir.mkdir(parents=True, exist_ok=True)
    ckpt = work_dir / CHECKPOINT
    steps, batch = int(cfg.steps or 0), int(cfg.batch_size or 1)
    # Separate streams: batch indices (CPU) and the family's noise (on the data's device).
    gens = {"data": torch.Generator().manual_seed(seed), "noise": torch.Generator(x.device).manual_seed(seed + 1)}
    step, history = _restore(ckpt, trainer, gens, cfg, seed) if resume and ckpt.exists() else (0, [])
    start = step
    quiet = not sys.stderr.isatty()
    with tqdm(total=steps, initial=step, disable=quiet, desc=f"{cfg.family} {work_dir.name}") as bar:
        while step < steps:
            idx = torch.randint(len(x), (batch,), generator=gens["data"]).to(x.device)  # (B,)
            losses = trainer.step(x[idx], None if y is None else y[idx], gens["noise"])
            step += 1
            check_finite(losses, step, ckpt)
            history.append({"step": step, **losses})
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()})
            if step % cfg.checkpoint_every == 0 or step == steps:
                _save_checkpoint(ckpt, trainer, step, history, gens, cfg, seed)
                if quiet and step < steps:  # no progress bar without a terminal: a line per checkpoint
                    loss = ", ".join(f"{k} {v:.4f}" for k, v in losses.items())
                    log.info("%s %s: step %d/%d, %s", cfg.family, work_dir.name, step, steps, loss)
            if cfg.sample_every and step % cfg.sample_every == 0:
                write_grid(grid(), work_dir / "samples" / f"step_{step:06d}.png")
    if step > start or not (work_dir / "samples.png").exists():
        write_grid(grid(), work_dir / "samples.png")
    if quiet and history:
        loss = ", ".join(f"{k} {v:.4f}" for k, v in history[-1].items() if k != "step")
        log.info("%s %s: done, step %d/%d, %s", cfg.family, work_dir.name, step, steps, loss)
    return step
