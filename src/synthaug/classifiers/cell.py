"""One grid cell (model × policies × real fraction × seed), a resumable grid, and the results table.

A cell is complete when ``<out_dir>/metrics.json`` exists: it is written last and atomically,
so a cell killed mid-training has none and runs again from the start.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from synthaug.augment import (
    PolicyContext,
    PolicySpec,
    as_specs,
    build_policy,
    expand_training_set,
    online_transform,
    policies_json,
    policies_label,
    policy_slug,
)
from synthaug.classifiers.config import ClassifierConfig
from synthaug.classifiers.evaluate import predict_proba
from synthaug.classifiers.registry import create_model
from synthaug.classifiers.train import FitData, class_weights, fit
from synthaug.data.imageset import ImageSet
from synthaug.data.splits import cell_indices
from synthaug.device import pick_device
from synthaug.io import atomic_path, read_json, write_json
from synthaug.metrics.classification import classification_metrics, flat_metrics

log = logging.getLogger(__name__)


def normalize_policies(policies: Sequence[PolicySpec | str | dict[str, Any]]) -> list[PolicySpec]:
    """Specs without ``none`` entries: ``[]`` and ``[none]`` are the same (baseline) cell."""
    return [s for s in as_specs(list(policies)) if s.name != "none"]


def cell_id(model: str, policies: Sequence[PolicySpec | str | dict[str, Any]], fraction: float, seed: int) -> str:
    """Stable folder-safe id, e.g. ``cnn__classical-p=0.2+basic__f0.5__s0``.

    Long or sanitised policy parts are shortened and suffixed with a hash of the canonical spec
    JSON, so two different cells never share an id.
    """
    specs = normalize_policies(policies)
    slug = policy_slug(specs)
    if len(slug) > 60 or slug != policies_label(specs).replace("(", "-").replace(")", "").replace(",", "-"):
        digest = hashlib.sha1(policies_json(specs).encode()).hexdigest()[:8]
        slug = f"{slug[:50]}-{digest}"
    return f"{model}__{slug}__f{fraction:g}__s{seed}"


def _tensors(data: ImageSet) -> tuple[torch.Tensor, torch.Tensor]:
    # uint8 (N, 1, H, W) and int64 (N,), kept on the CPU; batches move to the device.
    return torch.from_numpy(data.images).unsqueeze(1), torch.from_numpy(data.labels.astype("int64"))


def run_cell(
    train_pool: ImageSet,
    test: ImageSet,
    cfg: ClassifierConfig,
    policy_specs: Sequence[PolicySpec | str | dict[str, Any]],
    real_fraction: float,
    seed: int,
    out_dir: str | Path,
    *,
    val_fraction: float = 0.15,
    device: str = "auto",
    context: PolicyContext | None = None,
) -> dict[str, Any]:
    """Train and evaluate one cell; write metrics.json, history.csv, confusion.csv, best.pt; return its row."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    specs = normalize_policies(policy_specs)
    dev = pick_device(device)
    if cfg.train.threads is not None:
        # A process-wide setting, taken from the config on purpose: on a CPU shared with other
        # work, one thread avoids OpenMP threads waiting on descheduled peers (docs/BENCHMARKS.md).
        torch.set_num_threads(cfg.train.threads)
    fit_idx, val_idx = cell_indices(train_pool.labels, real_fraction, val_fraction, seed)
    real, val = train_pool.subset(fit_idx), train_pool.subset(val_idx)
    policies = [build_policy(s) for s in specs]
    train = expand_training_set(real, policies, seed, context)
    # The global RNG is seeded once per cell, only for weight init and dropout masks (layers
    # draw from it internally); shuffling and augmentation use their own generators.
    torch.manual_seed(seed)
    model = create_model(cfg.model.name, train_pool.num_classes, train_pool.size, **cfg.model.options())
    meta = {
        "model_config": cfg.model.model_dump(mode="json"),
        "num_classes": train_pool.num_classes,
        "image_size": train_pool.size,
        "class_names": list(train_pool.class_names),
        "seed": seed,
    }
    (tx, ty), (vx, vy) = _tensors(train), _tensors(val)
    weights = class_weights(train.labels, train.num_classes) if cfg.train.class_weights else None
    result = fit(model, FitData(tx, ty, vx, vy), cfg.train, out, seed, dev, meta, online_transform(policies), weights)
    test_m = classification_metrics(
        predict_proba(model, test, cfg.train.eval_batch_size, dev), test.labels, test.class_names
    )
    val_m = classification_metrics(
        predict_proba(model, val, cfg.train.eval_batch_size, dev), val.labels, val.class_names
    )
    row: dict[str, Any] = {
        "cell_id": cell_id(cfg.model.label(), specs, real_fraction, seed),
        "model": cfg.model.label(),
        "policy": policies_label(specs),
        "policy_spec": policies_json(specs),
        "real_fraction": float(real_fraction),
        "seed": int(seed),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "wall_time_s": time.perf_counter() - start,
        "train_images_per_s": result.train_images_per_s,
        "n_real": len(real),
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(test),
        **flat_metrics(test_m, "test"),
        **flat_metrics(val_m, "val"),
    }
    _write_confusion(out / "confusion.csv", test_m["confusion"], test.class_names)
    config = {"classifier": cfg.model_dump(mode="json"), "policies": [s.model_dump() for s in specs]}
    write_json(out / "metrics.json", {"row": row, "test": test_m, "val": val_m, "config": config})  # written last
    log.info("cell %s: test acc %.3f in %.0f s", row["cell_id"], row["test_accuracy"], row["wall_time_s"])
    return row


def run_grid(
    train_pool: ImageSet,
    test: ImageSet,
    cfg: ClassifierConfig,
    policy_grid: Sequence[Sequence[PolicySpec | str | dict[str, Any]]],
    fractions: Sequence[float],
    seeds: Sequence[int],
    out_dir: str | Path,
    results_path: str | Path | None = None,
    *,
    val_fraction: float = 0.15,
    device: str = "auto",
    context: PolicyContext | None = None,
) -> pd.DataFrame:
    """Run every (policies, fraction, seed) cell under ``out_dir/<cell_id>/``, skipping complete ones.

    Rows go to ``results_path`` (default ``out_dir/results.parquet``) as each cell finishes.
    """
    out = Path(out_dir)
    results_path = Path(results_path) if results_path is not None else out / "results.parquet"
    done = set(pd.read_parquet(results_path, columns=["cell_id"])["cell_id"]) if results_path.exists() else set()
    rows = []
    for seed in seeds:
        for fraction in fractions:
            for policies in policy_grid:
                cid = cell_id(cfg.model.label(), list(policies), fraction, seed)
                metrics_path = out / cid / "metrics.json"
                if metrics_path.exists():
                    log.info("cell %s: complete, skipped", cid)
                    row = read_json(metrics_path)["row"]
                    if cid not in done:
                        append_result(results_path, row)
                else:
                    row = run_cell(
                        train_pool,
                        test,
                        cfg,
                        policies,
                        fraction,
                        seed,
                        out / cid,
                        val_fraction=val_fraction,
                        device=device,
                        context=context,
                    )
                    append_result(results_path, row)
                rows.append(row)
    return pd.DataFrame(rows)


def append_result(results_path: str | Path, row: dict[str, Any]) -> pd.DataFrame:
    """Add ``row`` to the parquet results table atomically, replacing any row with its ``cell_id``."""
    path = Path(results_path)
    new = pd.DataFrame([row])
    if path.exists():
        old = pd.read_parquet(path)
        old = old[old["cell_id"] != row["cell_id"]]
        new = pd.concat([old, new], ignore_index=True) if len(old) else new
    with atomic_path(path) as tmp:
        new.to_parquet(tmp, index=False)
    return new


def _write_confusion(path: Path, confusion: list[list[int]], class_names: Sequence[str]) -> None:
    names = list(class_names)
    frame = pd.DataFrame(confusion, index=pd.Index(names, name="true"), columns=names)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp)
