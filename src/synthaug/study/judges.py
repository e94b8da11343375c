"""The quality stage's classifiers: a cell's *judge* and the TSTR classifiers.

A judge is trained on the cell's real fit subset (its val subset stops it early). It is at
once the in-domain feature network of FID/KID/precision/recall and of the memorization check,
the TRTR classifier, and the filtering judge. TSTR trains the judge's network with the same
budget on a bank alone and tests it on the real test set, next to the judge (TRTR). Both go
through ``synthaug.classifiers.train.train_classifier``, like every classifier of the grid.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from synthaug.classifiers.evaluate import load_checkpoint, predict_proba
from synthaug.classifiers.train import train_classifier
from synthaug.config import ModelConfig, QualityConfig, SynthaugConfig, TrainConfig
from synthaug.data.imageset import ImageSet
from synthaug.generators.base import file_hash
from synthaug.io import read_json, write_json
from synthaug.metrics.classification import classification_metrics
from synthaug.metrics.features import EncoderFeatures, FeatureExtractor
from synthaug.rundir import BEST, CELL_METRICS, JUDGES

log = logging.getLogger(__name__)


def digest(ids: np.ndarray) -> str:
    """Short hash of a list of image ids (what a cached artifact was made from)."""
    return hashlib.sha1("\n".join(map(str, ids)).encode()).hexdigest()[:16]


def judge_model(cfg: SynthaugConfig, q: QualityConfig) -> ModelConfig:
    """The study model labelled ``q.encoder_model`` (with its options), else that registry name's defaults."""
    for model in cfg.study.models:
        if model.label() == q.encoder_model:
            return model
    try:
        return ModelConfig(name=q.encoder_model)
    except ValueError as exc:
        labels = [m.label() for m in cfg.study.models]
        raise ValueError(f"quality.encoder_model {q.encoder_model!r} is not a study model {labels}: {exc}") from exc


def budget(cfg: SynthaugConfig, q: QualityConfig) -> TrainConfig:
    """The study's training settings with the quality stage's epoch cap."""
    return cfg.train if q.epochs is None else cfg.train.model_copy(update={"epochs": min(q.epochs, cfg.train.epochs)})


def cached_classifier(
    mcfg: ModelConfig,
    tcfg: TrainConfig,
    train: ImageSet,
    val: ImageSet,
    test: ImageSet,
    out: Path,
    seed: int,
    device: torch.device,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train on ``train`` (early stopping on ``val``) and test on ``test``; reuse ``out`` when complete.

    ``out/metrics.json`` is written last, so an interrupted training starts again; it records
    which images, network and budget made the classifier, and a change trains it again.
    """
    identity = {
        "train": digest(train.ids),
        "model": mcfg.model_dump(mode="json"),
        "train_config": tcfg.model_dump(mode="json"),
    }
    done = out / CELL_METRICS
    if done.exists() and (out / BEST).exists() and read_json(done).get("identity") == identity:
        model, _ = load_checkpoint(out / BEST, device)
        return model, read_json(done)
    log.info("training %s on %d images (%s)", mcfg.label(), len(train), out)
    model, result = train_classifier(mcfg, tcfg, train, val, out, seed, device)
    probs = predict_proba(model, test, tcfg.eval_batch_size, device)
    metrics = {
        "model": mcfg.label(),
        "n_train": len(train),
        "train_counts": dict(zip(train.class_names, train.class_counts().tolist(), strict=True)),
        "n_val": len(val),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "test": classification_metrics(probs, test.labels, test.class_names),
        "identity": identity,
    }
    write_json(done, metrics)
    return model, metrics


def penultimate(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Input of the model's last ``nn.Linear`` (the classifier head) for a batch -> (N, D)."""
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    captured: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return captured[0]


@dataclass(frozen=True)
class RealCell:
    """The real images of one cell: fit subset (what its generators saw), val subset, test set."""

    fit: ImageSet
    val: ImageSet
    test: ImageSet


@dataclass(frozen=True)
class Judge:
    """A cell's judge classifier, its feature networks by role, and what identifies it."""

    model: nn.Module
    networks: dict[str, FeatureExtractor]  # "encoder" always, "inception" when configured
    checkpoint_hash: str
    device: torch.device


def cell_judge(
    cfg: SynthaugConfig,
    q: QualityConfig,
    real: RealCell,
    key: str,
    out: Path,
    seed: int,
    shared: dict[str, FeatureExtractor],
    device: torch.device,
) -> tuple[Judge, dict[str, Any]]:
    """Train (or reuse) the judge of a cell in ``out``; returns it and its record (TRTR metrics).

    ``shared``: feature networks every cell uses besides the judge's own encoder (Inception).
    """
    mcfg = judge_model(cfg, q)
    model, metrics = cached_classifier(mcfg, budget(cfg, q), real.fit, real.val, real.test, out, seed, device)
    encoder = EncoderFeatures(model, features_fn=penultimate, name=f"encoder:{mcfg.label()}@{key}")
    judge = Judge(model, {"encoder": encoder, **shared}, file_hash(out / BEST), device)
    log.info("quality: cell %s: judge %s, test accuracy %.3f (TRTR)", key, mcfg.label(), metrics["test"]["accuracy"])
    return judge, {"path": f"{JUDGES}/{key}", **metrics}


def tstr(
    cfg: SynthaugConfig, q: QualityConfig, bank: ImageSet, real: RealCell, out: Path, seed: int, device: torch.device
) -> dict[str, Any] | None:
    """The judge's network and budget trained on the bank only (real val for early stopping), tested on real."""
    if len(bank) < 2:
        log.warning("quality: bank at %s has %d images; no TSTR", out, len(bank))
        return None
    _, metrics = cached_classifier(judge_model(cfg, q), budget(cfg, q), bank, real.val, real.test, out, seed, device)
    log.info("quality: TSTR %s: test accuracy %.3f", out.name, metrics["test"]["accuracy"])
    return metrics
