"""Stage graph of a study over one run directory. Each stage is skipped when its artifact exists."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthaug.config import ConfigError, SynthaugConfig, load_config
from synthaug.config.policies import FromBank, policy_params
from synthaug.data.prepare import PreparedData, prepared
from synthaug.data.split_audit import split_audit
from synthaug.device import pick_device, require_native_cpu_bf16
from synthaug.io import atomic_write, read_json, remove_orphans, write_json
from synthaug.lock import RunLock
from synthaug.metrics.stats import metric_columns, paired_comparison, summarize_cells
from synthaug.report import build_report
from synthaug.report.figures import image_grid
from synthaug.rundir import BANK_QUALITY, PAIRS_PNG, SCORES, RunDir
from synthaug.study.cluster import (
    check_shared_filesystem,
    for_tasks,
    require_backend,
    require_generator_extras,
    shutdown_backends,
)
from synthaug.study.explain import run_explain
from synthaug.study.grid import run_classifier_grid
from synthaug.study.quality import run_quality
from synthaug.study.synthetic import check_bank_growth, run_banks, run_generators, study_cell

log = logging.getLogger(__name__)
MIN_CELL_PER_CLASS = 3  # a cell's real subset with fewer images of a class gets a named warning


@dataclass(frozen=True)
class StudyContext:
    cfg: SynthaugConfig
    run: RunDir

    @property
    def data(self) -> PreparedData:
        """The study's data, prepared once in this process (decoding is cached on disk too)."""
        return prepared(self.cfg.data, seed=self.cfg.study.seeds[0])


def stage_audit(ctx: StudyContext) -> None:
    write_json(ctx.run.audit, ctx.data.audit)


def stage_splits(ctx: StudyContext) -> None:
    """Record by file id which images train, validate and test every (seed, real fraction) cell, the unit
    of splitting, the share of each class's images a cell got, and the split audit (validation vs test)."""
    train, test, study = ctx.data.train, ctx.data.test, ctx.cfg.study
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    warnings: list[str] = []
    totals = np.maximum(train.class_counts(), 1)
    for seed in study.seeds:
        cells[str(seed)] = {}
        for frac in study.real_fractions:
            cell = study_cell(ctx.cfg, train, frac, seed)
            fit, val = cell.fit(train), cell.val(train)
            audit = split_audit(fit, val, test, ctx.cfg.data.leakage.min_correlation)
            achieved = (fit.class_counts() + val.class_counts()) / totals
            cells[str(seed)][f"{frac:g}"] = {
                "train": fit.ids.tolist(),
                "val": val.ids.tolist(),
                "achieved_fraction": dict(zip(train.class_names, np.round(achieved, 4).tolist(), strict=True)),
                "audit": audit,
            }
            warnings += [
                f"real fraction {frac:g}, seed {seed}: class '{name}' has {n} training image(s) "
                f"(fewer than {MIN_CELL_PER_CLASS}: noisy results; use a larger real fraction)"
                for name, n in zip(train.class_names, fit.class_counts().tolist(), strict=True)
                if n < MIN_CELL_PER_CLASS
            ]
            if audit["leak"]:
                warnings.append(
                    f"real fraction {frac:g}, seed {seed}: {audit['val_near_copies']:.0%} of validation images are "
                    f"near copies of training images (test: {audit['test_near_copies']:.0%}); validation loss will "
                    "reward memorisation. Give the patient groups in data.groups"
                )
    if ctx.run.splits.exists():  # a study grown by seeds: the recorded seeds' cells must come out as recorded
        recorded = read_json(ctx.run.splits)
        for seed, fractions in recorded["cells"].items():
            for frac, entry in fractions.items():
                now = cells.get(seed, {}).get(frac)
                if now is None or [now["train"], now["val"]] != [entry["train"], entry["val"]]:
                    raise ConfigError(
                        f"the images of cell f{frac}_s{seed} are not those recorded in {ctx.run.splits}: the data "
                        "changed since the study ran; use a new --out folder for the changed data"
                    )
        had = len(recorded["cells"])
        log.info("splits: %d seed(s) added to the %d recorded", len(cells) - had, had)
    for line in warnings:
        log.warning("%s", line)
    record = {"unit": ctx.data.audit.get("split_unit", "image"), "test": test.ids.tolist()}
    record |= {"removed_test": ctx.data.removed_test_ids, "cells": cells, "warnings": warnings}
    write_json(ctx.run.splits, record)


def stage_samples(ctx: StudyContext) -> None:
    """A grid of real training images per class, for the report."""
    train = ctx.data.train
    png = image_grid(train.images, train.labels, train.class_names)
    atomic_write(ctx.run.real_grid, lambda p: p.write_bytes(png))


def stage_generators(ctx: StudyContext) -> None:
    run_generators(ctx.cfg, ctx.run)


def stage_banks(ctx: StudyContext) -> None:
    run_banks(ctx.cfg, ctx.run)


def stage_quality(ctx: StudyContext) -> None:
    run_quality(ctx.cfg, ctx.run)


def stage_explain(ctx: StudyContext) -> None:
    if ctx.cfg.quality.explain.enabled:
        run_explain(ctx.cfg, ctx.run)


def stage_classifiers(ctx: StudyContext) -> None:
    run_classifier_grid(ctx.cfg, ctx.run)


def stage_statistics(ctx: StudyContext) -> None:
    """Per-cell summaries and paired comparisons of every recorded metric (test and validation:
    accuracy, balanced accuracy, macro-F1, cross-entropy, AUROC, per-class F1) as CSV tables."""
    if not ctx.run.results.exists():
        return
    df = pd.read_parquet(ctx.run.results)
    metrics = metric_columns(df)
    summary = pd.concat([summarize_cells(df, m) for m in metrics], ignore_index=True)
    atomic_write(ctx.run.summary, lambda p: summary.to_csv(p, index=False))
    if df["policy"].nunique() > 1:
        paired = [paired_comparison(df, m, baseline=ctx.cfg.study.baseline) for m in metrics]
        table = pd.concat(paired, ignore_index=True)
        atomic_write(ctx.run.paired, lambda p: table.to_csv(p, index=False))


def stage_report(ctx: StudyContext) -> None:
    build_report(ctx.run.root)


def _bank_scores(run: RunDir) -> list[Path]:
    return [p for ref in run.find_banks() for p in (ref.path / SCORES, ref.path / BANK_QUALITY, ref.path / PAIRS_PNG)]


def _splits_cover(ctx: StudyContext) -> bool:
    return set(map(str, ctx.cfg.study.seeds)) <= set(read_json(ctx.run.splits)["cells"])


@dataclass(frozen=True)
class Stage:
    name: str
    artifact: Callable[[RunDir], Path]
    run: Callable[[StudyContext], None]
    always: bool = False  # run every time: it resumes inside (grid) or only summarises other artifacts
    outputs: Callable[[RunDir], list[Path]] = lambda r: []  # what --force removes before it reruns
    # Whether the artifact covers the study (default: it exists); a study grown by seeds needs more splits.
    covers: Callable[[StudyContext], bool] = lambda ctx: True


STAGES: tuple[Stage, ...] = (
    Stage("audit", lambda r: r.audit, stage_audit, outputs=lambda r: [r.audit]),
    Stage("splits", lambda r: r.splits, stage_splits, outputs=lambda r: [r.splits], covers=_splits_cover),
    Stage("samples", lambda r: r.real_grid, stage_samples, outputs=lambda r: [r.real_grid]),
    Stage("generators", lambda r: r.generators, stage_generators, True, lambda r: [r.generators]),
    Stage("banks", lambda r: r.banks, stage_banks, True, lambda r: [r.banks]),
    Stage("quality", lambda r: r.quality, stage_quality, True, lambda r: [r.judges, r.quality, *_bank_scores(r)]),
    Stage("classifiers", lambda r: r.results, stage_classifiers, True, lambda r: [r.classifiers, r.results]),
    Stage("statistics", lambda r: r.summary, stage_statistics, True, lambda r: [r.statistics]),
    Stage("explain", lambda r: r.cams, stage_explain, outputs=lambda r: [r.explain]),
    Stage("report", lambda r: r.report, stage_report, True, lambda r: [r.report]),
)
# What each stage's artifacts feed: forcing a stage reruns these too.
FEEDS: dict[str, tuple[str, ...]] = {
    "audit": ("report",),
    "splits": ("report",),
    "samples": ("report",),
    "generators": ("banks",),
    "banks": ("quality", "classifiers", "explain"),
    "quality": ("report",),  # and the classifiers when a policy filters by the judges' scores
    "classifiers": ("statistics", "explain"),
    "statistics": ("report",),
    "explain": ("report",),
    "report": (),
}


def forced_stages(names: set[str], filters: bool = False) -> list[str]:
    """The named stages and every stage downstream of them, in stage order.

    ``filters``: some policy filters synthetic images by the quality stage's scores.
    """
    unknown = names - {s.name for s in STAGES}
    if unknown:
        raise ValueError(f"--force names unknown stage(s) {sorted(unknown)}; stages are {[s.name for s in STAGES]}")
    todo, seen = list(names), set(names)
    while todo:
        name = todo.pop()
        for nxt in FEEDS[name] + (("classifiers",) if name == "quality" and filters else ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return [s.name for s in STAGES if s.name in seen]


def _clear(stage: Stage, run: RunDir) -> None:
    removed = [p for p in stage.outputs(run) if p.exists()]
    for path in removed:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    log.info("stage %s: forced; removed %s", stage.name, ", ".join(p.relative_to(run.root).as_posix() for p in removed)
             or "nothing (no outputs yet)")  # fmt: skip


def _warn_oversubscription(cfg: SynthaugConfig) -> None:
    """train.threads is a per-task override: with several workers it may ask for more threads than cores."""
    s, threads, cores = cfg.study, cfg.train.threads, os.cpu_count() or 1
    if s.executor == "local" and threads and s.workers and threads * s.workers > cores:
        log.warning(
            "train.threads=%d x study.workers=%d = %d threads on %d cores: torch threads that share busy cores run "
            "many times slower; set train.threads=%d or fewer workers", threads, s.workers, threads * s.workers,
            cores, max(1, cores // s.workers),
        )  # fmt: skip


def _require_native_bf16(cfg: SynthaugConfig) -> None:
    """CPU bf16 asked for on a machine that would emulate it is refused before any work starts
    (tasks on other machines check again where they run)."""
    asked = [("train.cpu_bf16", cfg.study.device)] if cfg.train.cpu_bf16 else []
    for g in cfg.study.generators:
        if getattr(getattr(g, g.section, None), "cpu_bf16", False):
            asked.append((f"generator '{g.name}': {g.section}.cpu_bf16", g.device))
    for setting, device in asked:
        if pick_device(device).type == "cpu":
            require_native_cpu_bf16(setting)


def _run_stage(stage: Stage, ctx: StudyContext) -> None:
    run = ctx.run
    # A forced stage's artifact was cleared at the start.
    if stage.artifact(run).exists() and not stage.always and stage.covers(ctx):
        log.info("stage %s: complete, skipped", stage.name)
        return
    log.info("stage %s: running", stage.name)
    started = time.perf_counter()
    run.start_stage(stage.name)
    try:
        stage.run(ctx)
    except BaseException as exc:
        seconds = time.perf_counter() - started
        run.record_time(stage.name, seconds, finished=False)
        what = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"failed ({type(exc).__name__})"
        log.warning("stage %s %s after %.0f s; its finished tasks are kept", stage.name, what, seconds)
        raise
    run.record_time(stage.name, time.perf_counter() - started)


def run_study(cfg: SynthaugConfig, out: Path, force: set[str] | None = None) -> RunDir:
    """Run every stage whose artifact is missing (or forced); return the run directory.

    The run directory is locked for the whole run; the data are read and checked before
    anything is recorded, so a failed start leaves nothing that refuses the corrected command.
    """
    filters = any(isinstance(p, FromBank) and p.filtered for p in map(policy_params, cfg.study.all_specs()))
    forced = forced_stages(force or set(), filters)
    cluster = cfg.study.executor != "local"
    if cluster:
        require_backend(cfg.study.executor)  # a missing extra is named before anything starts
    require_generator_extras(cfg)
    if not cluster:
        _require_native_bf16(cfg)
    _warn_oversubscription(cfg)
    # Tasks on other machines (or in other working directories) need absolute paths.
    run = RunDir(Path(out).resolve() if cluster else out)
    with RunLock(run.root) as lock:
        grown = run.check(cfg)
        ctx = StudyContext(for_tasks(cfg), run)
        ctx.data  # noqa: B018  (reads and checks the data: bad input fails here, before config.yaml is written)
        if grown:  # more models or arms: only the new cells train; the CAMs are redone to cover their rows
            check_bank_growth(load_config(run.config), cfg, ctx.data.train)
            log.info("growing the study by %s; finished cells are kept", "; ".join(grown))
            _clear(next(s for s in STAGES if s.name == "explain"), run)  # before config.yaml: a resume redoes it too
        run.record(cfg)
        if orphans := remove_orphans(run.root):
            log.info("removed %d temporary files left by an interrupted run", len(orphans))
        run.account_interrupted(lock.taken_over)
        if forced:
            extra = sorted(set(forced) - (force or set()))
            also = f" and what depends on it: {', '.join(extra)}" if extra else ""
            log.info("forced: %s%s", ", ".join(sorted(force or set())), also)
            # Cleared before any stage runs: a run interrupted before it reaches a forced stage, then
            # resumed without --force, recomputes that stage instead of keeping its old artifacts.
            for stage in STAGES:
                if stage.name in forced:
                    _clear(stage, run)
        try:
            check_shared_filesystem(cfg.study, run)
            for stage in STAGES:
                _run_stage(stage, ctx)
        finally:
            shutdown_backends()
    return run
