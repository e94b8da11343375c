"""Grad-CAM of a study's classifiers on real vs synthetic images: the explain stage (``RUN_DIR/explain/``)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from synthaug.classifiers.evaluate import load_checkpoint
from synthaug.config import ExplainConfig, SynthaugConfig
from synthaug.data.imageset import ImageSet, to_float
from synthaug.data.prepare import prepared
from synthaug.device import pick_device
from synthaug.explain import cam_maps, cam_panel, compare_cams, mask_stats, pick_target_layer
from synthaug.generators.bank import load_bank
from synthaug.io import write_json
from synthaug.rundir import BEST, BankRef, RunDir
from synthaug.study.executors import Task, run_tasks

log = logging.getLogger(__name__)


def explain_rows(results: pd.DataFrame, cfg: SynthaugConfig, e: ExplainConfig) -> pd.DataFrame:
    """Classifiers to explain: per model, the chosen policies' cells at the largest fraction and first seed."""
    top = results[results["real_fraction"] == results["real_fraction"].max()]
    seeds = [s for s in cfg.study.seeds if s in set(top["seed"])] or sorted(set(top["seed"]))
    top = top[top["seed"] == seeds[0]]
    wanted = e.policies or [cfg.study.baseline]
    rows = []
    for model, group in top.groupby("model", sort=True):
        chosen = group[group["policy"].isin(wanted)]
        if chosen.empty:  # no cell with the wanted policy: explain the model's first cell instead
            chosen = group.sort_values("policy").head(1)
            log.info("explain: %s has no cell with policy %s; using %s", model, wanted, chosen["policy"].iloc[0])
        rows.append(chosen)
    return pd.concat(rows).sort_values(["model", "policy"]) if rows else top.head(0)


def first_per_class(data: ImageSet, per_class: int) -> ImageSet:
    """The first ``per_class`` images of each class (in id order), so reruns explain the same images."""
    order = np.argsort(data.ids.astype(str), kind="stable")
    picks = [order[data.labels[order] == c][:per_class] for c in range(data.num_classes)]
    return data.subset(np.sort(np.concatenate(picks)))


def _bank_images(ref: BankRef, train: ImageSet, per_class: int) -> tuple[ImageSet, bool]:
    """A few bank images per class; variations carry their source image's lesion mask."""
    bank, manifest = load_bank(ref.path)
    source = manifest.set_index("id")["source_id"].reindex(bank.ids)
    at = {str(i): k for k, i in enumerate(train.ids)}
    variation = bool(source.notna().all()) and len(bank) > 0
    if variation and train.masks is not None and all(str(s) in at for s in source):
        masks = train.masks[[at[str(s)] for s in source]]  # (N, H, W) bool, the sources' lesions
        bank = ImageSet(bank.images, bank.labels, bank.ids, bank.class_names, bank.splits, masks)
    return first_per_class(bank, per_class), variation


def real_cam_figures(model: nn.Module, real: ImageSet, tolerance: int) -> dict[str, Any]:
    """Lesion energy and pointing game of Grad-CAM on real images (None without masks)."""
    layer, reshape = pick_target_layer(model)
    cams = cam_maps(model, to_float(real.images), layer, real.labels, reshape)  # (N, H, W) in [0, 1]
    return {"n": len(real), **mask_stats(cams, real, tolerance)}


def load_for_cam(checkpoint: Path, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """A classifier checkpoint rebuilt for Grad-CAM: every parameter requires gradients again.

    A frozen backbone (resnet18 ``mode: frozen``) would otherwise pass no gradient to the target
    layer's activations; the weights themselves are never updated here.
    """
    model, meta = load_checkpoint(checkpoint, device)
    return model.requires_grad_(True), meta


def _explain_one(cfg: SynthaugConfig, run: RunDir, row: dict[str, Any], e: ExplainConfig) -> dict[str, Any]:
    """One classifier's Grad-CAM figures and panels (a task of the study's executor)."""
    data, device = prepared(cfg.data, seed=cfg.study.seeds[0]), pick_device(cfg.study.device)
    model, meta = load_for_cam(run.classifier_dir(row["cell_id"]) / BEST, device)
    if tuple(meta["class_names"]) != data.test.class_names:
        known = meta["class_names"]
        raise ValueError(f"classifier {row['cell_id']} knows classes {known}, the data has {data.test.class_names}")
    real = first_per_class(data.test, e.per_class)
    layer, _ = pick_target_layer(model)
    entry: dict[str, Any] = {
        "cell_id": row["cell_id"],
        "model": row["model"],
        "policy": row["policy"],
        "fraction": float(row["real_fraction"]),
        "seed": int(row["seed"]),
        "target_layer": type(layer).__name__,
        "tolerance_px": e.tolerance,
        "real": real_cam_figures(model, real, e.tolerance),
        "banks": [],
    }
    for ref in run.find_banks():
        if (ref.fraction, ref.seed) != (entry["fraction"], entry["seed"]):
            continue
        synthetic, variation = _bank_images(ref, data.train, e.per_class)
        if len(synthetic) == 0:
            continue
        figures, cams_r, cams_s = compare_cams(model, real, synthetic, tolerance=e.tolerance)
        panel = run.explain / f"{row['cell_id']}__{ref.name}.png"
        cam_panel(real, cams_r, synthetic, cams_s, e.per_class, panel)
        entry["banks"].append(
            {
                "bank": ref.name,
                "variation": variation,
                "panel": panel.relative_to(run.root).as_posix(),
                "synthetic": figures["synthetic"],
                "mean_cam_correlation": figures["mean_cam_correlation"],
            }
        )
    log.info("explain: %s on %d bank(s)", row["cell_id"], len(entry["banks"]))
    return entry


def run_explain(cfg: SynthaugConfig, run: RunDir, settings: ExplainConfig | None = None) -> Path:
    """Grad-CAM of the study's classifiers on real test vs bank images; writes ``RUN_DIR/explain/cams.json``.

    Per explained classifier: lesion energy and pointing game on real images (data with masks,
    e.g. phantoms), per bank of its cell the same for variations (their source's mask) and the
    per-class correlation of mean CAMs real vs synthetic, and a PNG panel. ``settings``
    defaults to ``cfg.quality.explain``.
    """
    e = settings or cfg.quality.explain
    if not run.results.exists():
        raise FileNotFoundError(
            f"'{run.results}' is missing: explain needs trained classifiers; run `synthaug run` first"
        )
    entries: list[dict[str, Any]] = []
    if e.enabled:
        rows = explain_rows(pd.read_parquet(run.results), cfg, e).to_dict("records")
        tasks = [Task(str(row["cell_id"]), functools.partial(_explain_one, cfg, run, row, e)) for row in rows]
        done = dict(run_tasks(cfg.study, run, "explain", tasks))
        entries = [done[i] for i in range(len(tasks))]  # in row order
    record = {"settings": e.model_dump(mode="json"), "classifiers": entries}
    return write_json(run.cams, record)
