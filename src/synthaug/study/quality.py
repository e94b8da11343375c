"""Can the synthetic images be trusted? The quality and explain stages of a study.

Quality (:func:`run_quality`), for every (real fraction, seed) cell that has banks:

1. a *judge* classifier is trained on the cell's real fit subset (its val subset stops it
   early). It is at once the in-domain feature network of FID/KID/precision/recall and of the
   memorization check, the TRTR classifier, and the filtering judge;
2. every bank of the cell is measured against the real fit subset and the real test set,
   checked for copies of training images (real test images are the baseline), and scored:
   ``banks/<bank>/f<frac>_s<seed>/scores.parquet`` holds the judge's confidence in the intended
   class and the memorization flag of every image (the ``min_confidence`` / ``drop_memorized``
   filters read it) and ``quality.json`` next to it caches the bank's figures;
3. for the configured cells, TSTR: the judge's network with the same budget trained on the bank
   alone, tested on the real test set next to the judge (TRTR).

Everything lands in ``RUN_DIR/quality.json``. Explain (:func:`run_explain`) runs Grad-CAM of the
study's classifiers on real test images and bank images and writes ``RUN_DIR/explain/``.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from pydantic import Field, field_validator
from torch import nn

from synthaug.classifiers import ModelConfig, TrainConfig, create_model
from synthaug.classifiers.evaluate import load_checkpoint, predict_proba
from synthaug.classifiers.train import FitData, fit
from synthaug.config_base import StrictModel
from synthaug.data.imageset import ImageSet
from synthaug.data.splits import cell_indices, stratified_subset
from synthaug.device import pick_device
from synthaug.generators.bank import MANIFEST, load_bank
from synthaug.generators.base import file_hash
from synthaug.io import atomic_path, atomic_write, read_json, write_json
from synthaug.layout import SCORES, cell_key, parse_cell_key
from synthaug.metrics.classification import classification_metrics
from synthaug.metrics.features import EncoderFeatures, FeatureExtractor, InceptionFeatures
from synthaug.metrics.memorization import memorization_report
from synthaug.metrics.quality import quality_report

if TYPE_CHECKING:  # synthaug.config imports this module for QualityConfig; no runtime import back
    from synthaug.config import SynthaugConfig
    from synthaug.data.prepare import PreparedData

log = logging.getLogger(__name__)
BANK_QUALITY = "quality.json"  # per-bank cache beside scores.parquet
PAIRS_PNG = "closest_pairs.png"
# QualityConfig fields a bank's cached figures depend on (a change measures the bank again).
MEASURE_SETTINGS = {"percentile", "max_images_per_bank", "inception_weights", "taus", "top_pairs"}


class ExplainConfig(StrictModel):
    """Grad-CAM of the study's classifiers on real vs synthetic images (the explain stage)."""

    enabled: bool = True
    per_class: int = Field(4, ge=1, description="real and synthetic images per class that are explained and shown")
    policies: list[str] | None = Field(
        None,
        description="policy labels whose classifiers are explained (None: the study baseline); one classifier "
        "per model and policy, at the largest real fraction and the first seed, to keep the stage cheap",
    )
    tolerance: int = Field(2, ge=0, description="pointing game: px the lesion mask is dilated by")


class QualityConfig(StrictModel):
    """Quality, memorization, TSTR and filtering scores of every synthetic bank (the quality stage)."""

    enabled: bool = True
    encoder_model: str = Field(
        "cnn",
        description="network of the judge classifier trained on each cell's real data: in-domain feature "
        "encoder, TRTR classifier and filtering judge. A registry name, or the label of a study model "
        "(its options are used)",
    )
    epochs: int | None = Field(
        None, ge=1, description="epoch cap for the judge and TSTR classifiers (None: train.epochs)"
    )
    inception_weights: str | None = Field(
        None, description="local Inception-v3 weights file; when set, quality is also measured in Inception features"
    )
    max_images_per_bank: int | None = Field(
        1000, ge=8, description="images per set (bank, real) FID/KID/precision/recall/MS-SSIM use (None: all)"
    )
    percentile: float = Field(
        1.0,
        gt=0,
        lt=100,
        description="memorization: flag images closer to a training image than this percentile of real test images",
    )
    top_pairs: int = Field(8, ge=1, description="closest synthetic/training pairs recorded and shown per bank")
    taus: list[float] = Field(
        default_factory=lambda: [0.5, 0.8, 0.9], description="judge confidences at which kept counts are reported"
    )
    tstr: bool = Field(True, description="train on synthetic, test on real, next to train on real (TRTR)")
    tstr_fractions: list[float] | None = Field(
        None, description="real fractions whose banks get TSTR (None: the largest only, to bound CPU cost)"
    )
    tstr_seeds: list[int] | None = Field(None, description="seeds whose banks get TSTR (None: the first only)")
    explain: ExplainConfig = ExplainConfig()

    @field_validator("taus")
    @classmethod
    def _taus(cls, value: list[float]) -> list[float]:
        if any(not 0 <= t <= 1 for t in value):
            raise ValueError(f"confidence thresholds must lie in [0, 1], got {value}")
        return sorted(value)


def quality_settings(cfg: SynthaugConfig) -> QualityConfig:
    """``cfg.quality``, or the defaults for a configuration without that section."""
    value = getattr(cfg, "quality", None)
    return value if isinstance(value, QualityConfig) else QualityConfig()


# ---------------------------------------------------------------- where banks and real cells are


@dataclass(frozen=True)
class BankRef:
    """One bank folder ``RUN_DIR/banks/<name>/f<fraction>_s<seed>/``."""

    name: str
    fraction: float
    seed: int
    path: Path

    @property
    def cell(self) -> str:
        return cell_key(self.fraction, self.seed)


def find_banks(run_root: Path) -> list[BankRef]:
    """Every bank with a manifest, ordered by cell then name."""
    refs = []
    for manifest in (Path(run_root) / "banks").glob(f"*/f*_s*/{MANIFEST}"):
        try:
            fraction, seed = parse_cell_key(manifest.parent.name)
        except ValueError:
            continue
        refs.append(BankRef(manifest.parent.parent.name, fraction, seed, manifest.parent))
    return sorted(refs, key=lambda r: (r.seed, r.fraction, r.name))


@dataclass(frozen=True)
class RealCell:
    """The real images of one cell: fit subset (what its generators saw), val subset, test set."""

    fit: ImageSet
    val: ImageSet
    test: ImageSet


def real_cell(cfg: SynthaugConfig, data: PreparedData, fraction: float, seed: int) -> RealCell:
    fit_idx, val_idx = cell_indices(data.train.labels, fraction, cfg.data.val_fraction, seed)
    return RealCell(data.train.subset(fit_idx), data.train.subset(val_idx), data.test)


def _prepared(cfg: SynthaugConfig) -> PreparedData:
    from synthaug.data.prepare import prepare_data  # imports synthaug.config, which imports this module

    return prepare_data(cfg.data, seed=cfg.study.seeds[0])  # cached decode


# ---------------------------------------------------------------- classifiers: judge and TSTR


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


def _tensors(data: ImageSet) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(data.images).unsqueeze(1), torch.from_numpy(data.labels.astype("int64"))  # (N,1,H,W), (N,)


def trained_classifier(
    mcfg: ModelConfig,
    train: ImageSet,
    val: ImageSet,
    test: ImageSet,
    tcfg: TrainConfig,
    out: Path,
    seed: int,
    device: torch.device,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train on ``train`` (early stopping on ``val``) and test on ``test``; reuse ``out`` when complete.

    ``out/metrics.json`` is written last, so an interrupted training starts again; it records
    which images, network and budget made the classifier, and a change trains it again.
    """
    identity = {
        "train": _digest(train.ids),
        "model": mcfg.model_dump(mode="json"),
        "train_config": tcfg.model_dump(mode="json"),
    }
    done = out / "metrics.json"
    if done.exists() and (out / "best.pt").exists() and read_json(done).get("identity") == identity:
        model, _ = load_checkpoint(out / "best.pt", device)
        return model, read_json(done)
    log.info("training %s on %d images (%s)", mcfg.label(), len(train), out)
    torch.manual_seed(seed)  # weight init and dropout only; shuffling has its own generator in fit
    model = create_model(mcfg.name, train.num_classes, train.size, **mcfg.options())
    meta = {
        "model_config": mcfg.model_dump(mode="json"),
        "num_classes": train.num_classes,
        "image_size": train.size,
        "class_names": list(train.class_names),
        "seed": seed,
    }
    result = fit(model, FitData(*_tensors(train), *_tensors(val)), tcfg, out, seed, device, meta)
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


# ---------------------------------------------------------------- one bank


def _capped(data: ImageSet, cap: int | None, seed: int) -> ImageSet:
    """A stratified random subset of at most ``cap`` images (the whole set when it is smaller)."""
    if cap is None or len(data) <= cap:
        return data
    return data.subset(stratified_subset(data.labels, cap / len(data), seed))


def _digest(ids: np.ndarray) -> str:
    return hashlib.sha1("\n".join(map(str, ids)).encode()).hexdigest()[:16]


def pair_strip(synthetic: ImageSet, train: ImageSet, pairs: list[dict[str, Any]]) -> bytes:
    """PNG: one column per pair, the synthetic image above its nearest training image (1 px gutters)."""
    s_at = {str(i): k for k, i in enumerate(synthetic.ids)}
    t_at = {str(i): k for k, i in enumerate(train.ids)}
    size = synthetic.size
    gap_h, gap_v = np.full((1, size), 255, np.uint8), np.full((2 * size + 1, 1), 255, np.uint8)
    cols: list[np.ndarray] = []
    for p in pairs:
        pair = [synthetic.images[s_at[p["synthetic_id"]]], gap_h, train.images[t_at[p["train_id"]]]]
        cols += [np.vstack(pair), gap_v]  # (2·size + 1, size) then a gutter
    buf = io.BytesIO()
    Image.fromarray(np.hstack(cols[:-1])).save(buf, format="PNG")
    return buf.getvalue()


def filtering_counts(scores: pd.DataFrame, class_names: tuple[str, ...], taus: list[float]) -> dict[str, Any]:
    """Images per class a policy keeps with ``min_confidence=τ`` and / or ``drop_memorized``."""

    def per_class(keep: np.ndarray) -> dict[str, int]:
        counts = np.bincount(scores["class_id"].to_numpy()[keep], minlength=len(class_names))
        return dict(zip(class_names, counts.tolist(), strict=True))

    conf, fresh = scores["confidence"].to_numpy(), ~scores["memorized"].to_numpy(bool)
    return {
        "all": per_class(np.ones(len(scores), bool)),
        "not_memorized": per_class(fresh),
        "min_confidence": {f"{t:g}": per_class(conf >= t) for t in taus},
        "min_confidence_not_memorized": {f"{t:g}": per_class((conf >= t) & fresh) for t in taus},
    }


@dataclass(frozen=True)
class Judge:
    """A cell's judge classifier, its feature networks by role, and what identifies it."""

    model: nn.Module
    networks: dict[str, FeatureExtractor]  # "encoder" always, "inception" when configured
    checkpoint_hash: str
    device: torch.device


def measure_bank(
    ref: BankRef, bank: ImageSet, manifest: pd.DataFrame, real: RealCell, judge: Judge, q: QualityConfig
) -> dict[str, Any]:
    """Score, check and measure one bank; writes scores.parquet, closest_pairs.png, quality.json (last)."""
    if bank.class_names != real.fit.class_names:
        raise ValueError(f"bank {ref.path} has classes {bank.class_names}, the data has {real.fit.class_names}")
    settings = q.model_dump(mode="json", include=MEASURE_SETTINGS)
    fingerprint = {"images": _digest(bank.ids), "judge": judge.checkpoint_hash, "settings": settings}
    cache = ref.path / BANK_QUALITY
    if cache.exists() and (ref.path / SCORES).exists() and read_json(cache).get("fingerprint") == fingerprint:
        log.info("quality: bank %s %s: measured before, reused", ref.name, ref.cell)
        return read_json(cache)
    probs = predict_proba(judge.model, bank, device=judge.device)  # (N, C)
    encoder = judge.networks["encoder"]
    mem = memorization_report(real.fit, real.test, bank, encoder, q.percentile, q.top_pairs, device=judge.device)
    scores = pd.DataFrame(
        {
            "id": bank.ids.astype(str),
            "class_id": bank.labels,
            "confidence": probs[np.arange(len(bank)), bank.labels],  # judge's probability of the intended class
            "predicted": probs.argmax(axis=1),
            "memorized": mem.per_image["flagged"].to_numpy(bool),
        }
    )
    with atomic_path(ref.path / SCORES) as tmp:
        scores.to_parquet(tmp, index=False)
    png = pair_strip(bank, real.fit, mem.summary["measures"]["pixel"]["closest_pairs"])
    atomic_write(ref.path / PAIRS_PNG, lambda p: p.write_bytes(png))
    sample = _capped(bank, q.max_images_per_bank, ref.seed)
    quality = {
        role: {
            "vs_train": quality_report(_capped(real.fit, q.max_images_per_bank, ref.seed), sample, net, ref.seed),
            "vs_test": quality_report(_capped(real.test, q.max_images_per_bank, ref.seed), sample, net, ref.seed),
        }
        for role, net in judge.networks.items()
    }
    families = sorted(set(manifest["family"].dropna().astype(str)))
    entry = {
        "bank": ref.name,
        "family": families[0] if len(families) == 1 else "+".join(families),
        "variation": bool(manifest["source_id"].notna().any()),
        "fraction": ref.fraction,
        "seed": ref.seed,
        "cell": ref.cell,
        "n_images": len(bank),
        "class_counts": dict(zip(bank.class_names, bank.class_counts().tolist(), strict=True)),
        "scores": f"banks/{ref.name}/{ref.cell}/{SCORES}",
        "closest_pairs_png": f"banks/{ref.name}/{ref.cell}/{PAIRS_PNG}",
        "quality": quality,
        "memorization": mem.summary,
        "mean_confidence": float(scores["confidence"].mean()),
        "filtering": filtering_counts(scores, bank.class_names, q.taus),
        "fingerprint": fingerprint,
    }
    write_json(cache, entry)  # written last: the bank counts as measured only now
    vs = quality["encoder"]["vs_train"]["overall"]
    flagged = 100 * mem.summary["flagged_share"]
    log.info("quality: bank %s %s: FID %s vs train, %.1f%% flagged", ref.name, ref.cell, _fmt(vs["fid"]), flagged)
    return entry


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


# ---------------------------------------------------------------- the stage


def _budget(cfg: SynthaugConfig, q: QualityConfig) -> TrainConfig:
    """The study's training settings with the quality stage's epoch cap."""
    return cfg.train if q.epochs is None else cfg.train.model_copy(update={"epochs": min(q.epochs, cfg.train.epochs)})


def cell_judge(
    cfg: SynthaugConfig,
    q: QualityConfig,
    real: RealCell,
    key: str,
    out: Path,
    seed: int,
    shared: dict[str, FeatureExtractor],
) -> tuple[Judge, dict[str, Any]]:
    """Train (or reuse) the judge of a cell in ``out``; returns it and its record (TRTR metrics).

    ``shared``: feature networks every cell uses besides the judge's own encoder (Inception).
    """
    mcfg, device = judge_model(cfg, q), pick_device(cfg.study.device)
    model, metrics = trained_classifier(mcfg, real.fit, real.val, real.test, _budget(cfg, q), out, seed, device)
    encoder = EncoderFeatures(model, features_fn=penultimate, name=f"encoder:{mcfg.label()}@{key}")
    judge = Judge(model, {"encoder": encoder, **shared}, file_hash(out / "best.pt"), device)
    log.info("quality: cell %s: judge %s, test accuracy %.3f (TRTR)", key, mcfg.label(), metrics["test"]["accuracy"])
    return judge, {"path": f"judges/{key}", **metrics}


def _reference(real: RealCell, judge: Judge, q: QualityConfig, out: Path, seed: int) -> dict[str, Any]:
    """Real-vs-real yardstick of a cell: its fit subset against the test set, per feature network."""
    path = out / "reference.json"
    made_by = {"judge": judge.checkpoint_hash, "settings": q.model_dump(mode="json", include=MEASURE_SETTINGS)}
    if path.exists() and read_json(path).get("made_by") == made_by:
        return read_json(path)
    fit, test = _capped(real.fit, q.max_images_per_bank, seed), _capped(real.test, q.max_images_per_bank, seed)
    ref = {role: quality_report(fit, test, net, seed) for role, net in judge.networks.items()}
    record = {"made_by": made_by, "real_train_vs_real_test": ref}
    write_json(path, record)
    return record


def _tstr_cells(cfg: SynthaugConfig, q: QualityConfig) -> set[str]:
    if not q.tstr:
        return set()
    fractions = q.tstr_fractions or [max(cfg.study.real_fractions)]
    seeds = q.tstr_seeds or [cfg.study.seeds[0]]
    return {cell_key(f, s) for f in fractions for s in seeds}


def _tstr(
    cfg: SynthaugConfig, q: QualityConfig, ref: BankRef, bank: ImageSet, real: RealCell, out: Path
) -> dict[str, Any] | None:
    """The judge's network and budget trained on the bank only (real val for early stopping), tested on real."""
    if len(bank) < 2:
        log.warning("quality: bank %s %s has %d images; no TSTR", ref.name, ref.cell, len(bank))
        return None
    mcfg, device = judge_model(cfg, q), pick_device(cfg.study.device)
    _, metrics = trained_classifier(mcfg, bank, real.val, real.test, _budget(cfg, q), out, ref.seed, device)
    log.info("quality: bank %s %s: TSTR test accuracy %.3f", ref.name, ref.cell, metrics["test"]["accuracy"])
    return metrics


def run_quality(cfg: SynthaugConfig, run_root: Path, settings: QualityConfig | None = None) -> dict[str, Any]:
    """Measure every bank of the run directory; write ``RUN_DIR/quality.json`` and return its content.

    Resumable: judges (``RUN_DIR/judges/<cell>/``), TSTR classifiers and per-bank results are
    cached and reused; a bank whose images or judge changed is measured again.
    ``settings`` defaults to ``cfg.quality``.
    """
    q = settings or quality_settings(cfg)
    run_root = Path(run_root)
    banks = find_banks(run_root)
    if not q.enabled or not banks:
        log.info("quality: %s", "disabled" if not q.enabled else "no synthetic banks to measure")
        return {}
    if q.inception_weights and not Path(q.inception_weights).is_file():
        raise FileNotFoundError(f"quality.inception_weights: no file at {q.inception_weights!r}")
    shared: dict[str, FeatureExtractor] = {}
    if q.inception_weights:
        shared["inception"] = InceptionFeatures(q.inception_weights).to(pick_device(cfg.study.device))
    data, tstr_cells = _prepared(cfg), _tstr_cells(cfg, q)
    cells: dict[str, Any] = {}
    entries: list[dict[str, Any]] = []
    by_cell = sorted({(r.fraction, r.seed) for r in banks}, key=lambda fs: (fs[1], fs[0]))
    for n, (fraction, seed) in enumerate(by_cell, 1):
        key = cell_key(fraction, seed)
        log.info("quality: cell %s (%d/%d)", key, n, len(by_cell))
        real, out = real_cell(cfg, data, fraction, seed), run_root / "judges" / key
        judge, record = cell_judge(cfg, q, real, key, out, seed, shared)
        cells[key] = {"judge": record, **_reference(real, judge, q, out, seed)}
        for ref in (r for r in banks if r.cell == key):
            bank, manifest = load_bank(ref.path)
            if len(bank) == 0:
                log.warning("quality: bank %s %s holds no images; skipped", ref.name, ref.cell)
                continue
            entry = measure_bank(ref, bank, manifest, real, judge, q)
            tstr = _tstr(cfg, q, ref, bank, real, out / "tstr" / ref.name) if key in tstr_cells else None
            entries.append({**entry, "tstr": tstr})
    names = sorted({net["feature_network"] for e in entries for v in e["quality"].values() for net in v.values()})
    result = {"settings": q.model_dump(mode="json"), "feature_networks": names, "cells": cells, "banks": entries}
    write_json(run_root / "quality.json", result)
    log.info("quality: %d banks in %d cells measured; wrote %s", len(entries), len(cells), run_root / "quality.json")
    return result
