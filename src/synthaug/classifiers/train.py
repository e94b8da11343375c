"""The training loop as plain functions: one epoch, then ``fit`` with early stopping and checkpoints,
and :func:`train_classifier`, the one path every classifier of a study is trained through (grid
cells, the quality stage's judges and TSTR classifiers)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from synthaug.augment.policies import BatchTransform
from synthaug.augment.schedule import Schedule
from synthaug.classifiers.evaluate import evaluate
from synthaug.classifiers.registry import create_model
from synthaug.config.classifier import ModelConfig, TrainConfig
from synthaug.data.imageset import ImageSet, to_float
from synthaug.device import require_native_cpu_bf16
from synthaug.io import atomic_path, save_torch
from synthaug.rundir import BEST, HISTORY

log = logging.getLogger(__name__)
OptimizerFactory = Callable[[Iterable[nn.Parameter], TrainConfig], torch.optim.Optimizer]

OPTIMIZERS: dict[str, OptimizerFactory] = {
    "adam": lambda p, c: torch.optim.Adam(p, lr=c.lr, weight_decay=c.weight_decay),
    "adamw": lambda p, c: torch.optim.AdamW(p, lr=c.lr, weight_decay=c.weight_decay),
    "sgd": lambda p, c: torch.optim.SGD(p, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay, nesterov=True),
}


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Optimizer over the trainable parameters only (a frozen backbone is left out)."""
    return OPTIMIZERS[cfg.optimizer]([p for p in model.parameters() if p.requires_grad], cfg)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-epoch LR schedule: cosine to 0 over ``epochs``, step decay, or none."""
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    return None


def class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights n / (C * n_c), normalised like sklearn's 'balanced'; absent classes get 0."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


@dataclass(frozen=True)
class EpochStats:
    loss: float
    acc: float
    n: int
    seconds: float


def train_one_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    loss_fn: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    device: torch.device,
    shuffle_gen: torch.Generator,
    transform: BatchTransform | None = None,
    aug_gen: torch.Generator | None = None,
    channels_last: bool = False,
    weights: torch.Tensor | None = None,
    cpu_bf16: bool = False,
) -> EpochStats:
    """One pass over uint8 images (N, 1, H, W) in an order drawn from ``shuffle_gen``.

    ``transform`` (online augmentation) sees each uint8 batch before scaling to [-1, 1]; its
    randomness comes from ``aug_gen``. The last partial batch is kept (small datasets).
    ``weights`` (N,): per-image loss weights (see :func:`weighted_loss`); None is the plain mean.
    ``cpu_bf16``: the forward pass and loss under bf16 autocast when ``device`` is the CPU (weights,
    gradients and the optimiser stay fp32).
    """
    model.train()
    start = time.perf_counter()
    order = torch.randperm(len(images), generator=shuffle_gen)
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = torch.zeros((), dtype=torch.int64)
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        xb = images[idx]  # (B, 1, H, W) uint8
        if transform is not None:
            xb = transform(xb, aug_gen if aug_gen is not None else shuffle_gen)
        x = to_float(xb).to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = labels[idx].to(device, non_blocking=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_bf16 and device.type == "cpu"):
            logits = model(x)  # (B, C)
            loss = loss_fn(logits, y) if weights is None else weighted_loss(loss_fn, logits, y, weights[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # Accumulate on the device; one sync per epoch instead of one per batch.
        loss_sum = loss_sum.to(loss.device) + loss.detach().double() * len(idx)
        correct = correct.to(loss.device) + (logits.detach().argmax(1) == y).sum()
    n = len(order)
    return EpochStats(float(loss_sum) / n, float(correct) / n, n, time.perf_counter() - start)


def weighted_loss(loss_fn: nn.Module, logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Σ w_i · c_i · ℓ_i / Σ c_i over the batch (c_i: the class weight of image i, 1 without): the
    plain (class-weighted) mean when every w_i = 1, and an image with w_i → 0 adds nothing."""
    assert isinstance(loss_fn, nn.CrossEntropyLoss)
    per = nn.functional.cross_entropy(logits, y, weight=loss_fn.weight, reduction="none")  # (B,) includes c_i
    norm = loss_fn.weight[y].sum() if loss_fn.weight is not None else torch.tensor(float(len(y)), device=y.device)
    return (per * w).sum() / norm


@dataclass(frozen=True)
class FitResult:
    history: pd.DataFrame
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    train_seconds: float
    train_images_per_s: float


@dataclass(frozen=True)
class FitData:
    """Training and validation tensors: uint8 images (N, 1, H, W) and int64 labels (N,) on CPU."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor


def fit(
    model: nn.Module,
    data: FitData,
    cfg: TrainConfig,
    out_dir: Path,
    seed: int,
    device: torch.device,
    checkpoint_meta: dict[str, Any],
    transform: BatchTransform | None = None,
    loss_weights: torch.Tensor | None = None,
    schedule: Schedule | None = None,
) -> FitResult:
    """Train with early stopping on validation loss; keep the best weights in ``model`` and ``best.pt``.

    Writes ``out_dir/history.csv`` after every epoch (atomically) and ``out_dir/best.pt``
    (``checkpoint_meta`` + state_dict + epoch + val_loss) whenever validation loss improves.
    ``schedule``: per-image loss weights, and for two phases ``pretrain_epochs`` on the first
    phase's images (no early stopping) before the second phase, at its own LR, with early stopping.
    """
    if cfg.cpu_bf16 and device.type == "cpu":
        require_native_cpu_bf16("train.cpu_bf16")
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    train_loss = nn.CrossEntropyLoss(weight=None if loss_weights is None else loss_weights.to(device))
    gens = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)  # shuffling, augmentation
    rows: list[dict[str, float]] = []
    weights = None if schedule is None or schedule.weights is None else torch.as_tensor(schedule.weights).float()
    if schedule is not None and schedule.pretrain is not None and schedule.finetune is not None:
        first = torch.from_numpy(np.flatnonzero(schedule.pretrain))
        pre = _Phase(data.train_x[first], data.train_y[first], None if weights is None else weights[first], cfg.lr, 1)
        pre_cfg = cfg.model_copy(update={"epochs": schedule.pretrain_epochs, "patience": 0})
        _run_phase(model, pre, pre_cfg, data, train_loss, device, gens, transform, out_dir, rows, None)
        second = torch.from_numpy(np.flatnonzero(schedule.finetune))
        lr = schedule.finetune_lr or cfg.lr / 10
        main = _Phase(data.train_x[second], data.train_y[second], None if weights is None else weights[second], lr, 2)
    else:
        main = _Phase(data.train_x, data.train_y, weights, cfg.lr, None)
    start = len(rows)
    best_loss, best_epoch = _run_phase(model, main, cfg, data, train_loss, device, gens, transform, out_dir, rows,
                                       checkpoint_meta)  # fmt: skip
    history = pd.DataFrame(rows)
    seconds = float(history["seconds"].sum())
    n_seen = float(history["n"].sum()) if "n" in history else len(data.train_x) * len(history)
    history = history.drop(columns="n")
    return FitResult(history, best_epoch + start, best_loss, len(history), seconds, n_seen / max(seconds, 1e-9))


@dataclass(frozen=True)
class _Phase:
    x: torch.Tensor
    y: torch.Tensor
    weights: torch.Tensor | None
    lr: float
    number: int | None  # 1, 2 for the phases of pretraining (a history column); None: one phase


def _run_phase(
    model: nn.Module,
    phase: _Phase,
    cfg: TrainConfig,
    data: FitData,
    train_loss: nn.Module,
    device: torch.device,
    gens: tuple[torch.Generator, torch.Generator],
    transform: BatchTransform | None,
    out_dir: Path,
    rows: list[dict[str, float]],
    checkpoint_meta: dict[str, Any] | None,
) -> tuple[float, int]:
    """Epochs of one phase with its own optimiser and LR schedule; early stopping and the best
    weights (restored into ``model``) when ``checkpoint_meta`` is given. Returns (best loss, epoch)."""
    opt = make_optimizer(model, cfg.model_copy(update={"lr": phase.lr}))
    sched = make_scheduler(opt, cfg)
    val_loss_fn = nn.CrossEntropyLoss()
    best_loss, best_epoch, best_state, stale = float("inf"), 0, None, 0
    bar = tqdm(range(1, cfg.epochs + 1), desc="train" if phase.number is None else f"phase {phase.number}",
               unit="epoch", disable=None, leave=False)  # fmt: skip
    for epoch in bar:
        lr = opt.param_groups[0]["lr"]
        ep = train_one_epoch(model, opt, train_loss, phase.x, phase.y, cfg.batch_size, device, gens[0], transform,
                             gens[1], cfg.channels_last, phase.weights, cfg.cpu_bf16)  # fmt: skip
        v_loss, v_acc, _ = evaluate(
            model, data.val_x, data.val_y, val_loss_fn, cfg.eval_batch_size, device, cfg.channels_last
        )
        if sched is not None:
            sched.step()
        rows.append(
            {"epoch": len(rows) + 1, "train_loss": ep.loss, "train_acc": ep.acc, "val_loss": v_loss, "val_acc": v_acc}
            | {"lr": lr, "seconds": ep.seconds, "n": ep.n}
            | ({} if phase.number is None else {"phase": phase.number})
        )
        _write_history(out_dir / HISTORY, rows)
        bar.set_postfix(loss=f"{ep.loss:.3f}", val_loss=f"{v_loss:.3f}", val_acc=f"{v_acc:.3f}")
        if checkpoint_meta is None:
            continue
        if v_loss < best_loss - cfg.min_delta:
            best_loss, best_epoch, stale = v_loss, epoch, 0
            best_state = {k: t.detach().cpu().clone() for k, t in model.state_dict().items()}
            save_checkpoint(out_dir / BEST, best_state, {**checkpoint_meta, "epoch": len(rows), "val_loss": v_loss})
        else:
            stale += 1
            if cfg.patience and stale >= cfg.patience:
                log.info("early stop at epoch %d: val loss has not improved for %d epochs", len(rows), stale)
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return best_loss, best_epoch


def tensors(data: ImageSet) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 1, H, W) and int64 (N,), kept on the CPU; batches move to the device."""
    return torch.from_numpy(data.images).unsqueeze(1), torch.from_numpy(data.labels.astype("int64"))


def train_classifier(
    mcfg: ModelConfig,
    tcfg: TrainConfig,
    train: ImageSet,
    val: ImageSet,
    out_dir: Path,
    seed: int,
    device: torch.device,
    transform: BatchTransform | None = None,
    schedule: Schedule | None = None,
) -> tuple[nn.Module, FitResult]:
    """Build ``mcfg``'s network for ``train``'s classes and train it (early stopping on ``val``).

    The global RNG is seeded once, only for weight init and dropout masks (layers draw from it
    internally); shuffling and augmentation use their own generators. ``tcfg.class_weights``
    weights the loss by inverse class frequency; ``tcfg.threads`` sets torch's CPU threads.
    """
    if tcfg.threads is not None:
        # A process-wide setting, taken from the config on purpose: on a CPU shared with other
        # work, one thread avoids OpenMP threads waiting on descheduled peers (docs/BENCHMARKS.md).
        torch.set_num_threads(tcfg.threads)
    torch.manual_seed(seed)
    model = create_model(mcfg.name, train.num_classes, train.size, **mcfg.options())
    meta = {
        "model_config": mcfg.model_dump(mode="json"),
        "num_classes": train.num_classes,
        "image_size": train.size,
        "class_names": list(train.class_names),
        "seed": seed,
    }
    weights = class_weights(train.labels, train.num_classes) if tcfg.class_weights else None
    data = FitData(*tensors(train), *tensors(val))
    return model, fit(model, data, tcfg, Path(out_dir), seed, device, meta, transform, weights, schedule)


def save_checkpoint(path: Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Atomically write ``meta`` (model config, classes, epoch, ...) with the weights."""
    save_torch(path, {**meta, "state_dict": state_dict})


def _write_history(path: Path, rows: list[dict[str, float]]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(rows).drop(columns="n").to_csv(tmp, index=False)
