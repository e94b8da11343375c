"""Measuring one bank against its cell's real images with the cell's judge: quality (FID / KID /
precision / recall / MS-SSIM), memorization, judge confidences for filtering, and the cell's
real-vs-real yardstick. Results are cached beside the bank and reused while nothing changed.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from synthaug.classifiers.evaluate import predict_proba
from synthaug.config import QualityConfig
from synthaug.data.imageset import ImageSet
from synthaug.data.splits import stratified_subset
from synthaug.io import atomic_path, atomic_write, read_json, write_json
from synthaug.metrics.memorization import memorization_report
from synthaug.metrics.quality import quality_report
from synthaug.rundir import BANK_QUALITY, PAIRS_PNG, SCORES, BankRef
from synthaug.study.judges import Judge, RealCell, digest

log = logging.getLogger(__name__)
# QualityConfig fields a bank's cached figures depend on (a change measures the bank again).
MEASURE_SETTINGS = {"percentile", "max_images_per_bank", "inception_weights", "taus", "top_pairs"}


def capped(data: ImageSet, cap: int | None, seed: int) -> ImageSet:
    """A stratified random subset of at most ``cap`` images (the whole set when it is smaller)."""
    if cap is None or len(data) <= cap:
        return data
    return data.subset(stratified_subset(data.labels, cap / len(data), seed))


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


def measure_bank(
    ref: BankRef,
    bank: ImageSet,
    manifest: pd.DataFrame,
    real: RealCell,
    judge: Judge,
    q: QualityConfig,
    external: bool = False,
) -> dict[str, Any]:
    """Score, check and measure one bank; writes scores.parquet, closest_pairs.png, quality.json (last).

    ``external``: the images were made outside the study (a folder, a pretrained model), by a generator
    that may have seen the test images; they are also checked against the test set (``test_exposure``).
    """
    if bank.class_names != real.fit.class_names:
        raise ValueError(f"bank {ref.path} has classes {bank.class_names}, the data has {real.fit.class_names}")
    settings = q.model_dump(mode="json", include=MEASURE_SETTINGS)
    fingerprint: dict[str, Any] = {"images": digest(bank.ids), "judge": judge.checkpoint_hash, "settings": settings}
    if external:
        fingerprint["test_exposure"] = True
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
    sample = capped(bank, q.max_images_per_bank, ref.seed)
    quality = {
        role: {
            "vs_train": quality_report(capped(real.fit, q.max_images_per_bank, ref.seed), sample, net, ref.seed),
            "vs_test": quality_report(capped(real.test, q.max_images_per_bank, ref.seed), sample, net, ref.seed),
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
        "scores": ref.relative(SCORES),
        "closest_pairs_png": ref.relative(PAIRS_PNG),
        "quality": quality,
        "memorization": mem.summary,
        "mean_confidence": float(scores["confidence"].mean()),
        "filtering": filtering_counts(scores, bank.class_names, q.taus),
        "fingerprint": fingerprint,
    }
    if external:
        entry["test_exposure"] = test_exposure(bank, real, encoder, q, judge.device)
    write_json(cache, entry)  # written last: the bank counts as measured only now
    vs = quality["encoder"]["vs_test"]["overall"]
    log.info(
        "quality: bank %s %s: FID %s vs test, precision %s, recall %s, MS-SSIM %s (real %s), %.1f%% memorization flags",
        ref.name, ref.cell, _fmt(vs["fid"]), _fmt(vs["precision"]), _fmt(vs["recall"]),
        _fmt(vs["diversity_synthetic"]), _fmt(vs["diversity_real"]), 100 * mem.summary["flagged_share"],
    )  # fmt: skip
    return entry


def test_exposure(bank: ImageSet, real: RealCell, encoder: Any, q: QualityConfig, device: Any) -> dict[str, Any]:
    """The memorization check with the roles of the real splits swapped: synthetic images closer to a
    real *test* image than the real training images are. A generator that never saw the test set is
    flagged at about the check's false-positive rate; far more means it saw (some of) the test images."""
    seen = memorization_report(real.test, real.fit, bank, encoder, q.percentile, 0, device=device).summary
    keys = ("n_synthetic", "exact_copies", "flagged_share", "flagged_share_per_class")
    out = {k: seen[k] for k in keys}
    if out["flagged_share"] > 2 * q.percentile / 100 or out["exact_copies"]:
        log.warning(
            "quality: %.1f%% of the images sit closer to a real test image than independent real images do "
            "(%d exact copies): the generator that made them may have seen this study's test images",
            100 * out["flagged_share"], out["exact_copies"],
        )  # fmt: skip
    return out


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def reference(real: RealCell, judge: Judge, q: QualityConfig, out: Path, seed: int) -> dict[str, Any]:
    """Real-vs-real yardstick of a cell: its fit subset against the test set, per feature network."""
    path = out / "reference.json"
    made_by = {"judge": judge.checkpoint_hash, "settings": q.model_dump(mode="json", include=MEASURE_SETTINGS)}
    if path.exists() and read_json(path).get("made_by") == made_by:
        return read_json(path)
    fit, test = capped(real.fit, q.max_images_per_bank, seed), capped(real.test, q.max_images_per_bank, seed)
    ref = {role: quality_report(fit, test, net, seed) for role, net in judge.networks.items()}
    record = {"made_by": made_by, "real_train_vs_real_test": ref}
    write_json(path, record)
    return record
