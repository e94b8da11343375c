"""Stage graph of a study over one run directory. Each stage is skipped when its artifact exists."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from synthaug.config import SynthaugConfig
from synthaug.data.prepare import PreparedData, prepared
from synthaug.io import atomic_write, write_json
from synthaug.metrics.stats import paired_comparison, summarize_cells
from synthaug.report import build_report
from synthaug.report.figures import image_grid
from synthaug.rundir import RunDir
from synthaug.study.explain import run_explain
from synthaug.study.grid import run_classifier_grid
from synthaug.study.quality import run_quality
from synthaug.study.synthetic import run_banks, run_generators, study_cell

log = logging.getLogger(__name__)
HEADLINE_METRICS = ("test_accuracy", "test_balanced_accuracy", "test_macro_f1")


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
    """Record by file id which images train, validate and test every (seed, real fraction) cell."""
    train, study = ctx.data.train, ctx.cfg.study
    cells: dict[str, dict[str, dict[str, list[str]]]] = {}
    for seed in study.seeds:
        cells[str(seed)] = {}
        for frac in study.real_fractions:
            cell = study_cell(ctx.cfg, train, frac, seed)
            cells[str(seed)][f"{frac:g}"] = {"train": cell.fit(train).ids.tolist(), "val": cell.val(train).ids.tolist()}
    write_json(
        ctx.run.splits,
        {"test": ctx.data.test.ids.tolist(), "removed_test": ctx.data.removed_test_ids, "cells": cells},
    )


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
    """Per-cell summaries and paired comparisons as CSV tables beside the results."""
    if not ctx.run.results.exists():
        return
    df = pd.read_parquet(ctx.run.results)
    summary = pd.concat([summarize_cells(df, m) for m in HEADLINE_METRICS], ignore_index=True)
    atomic_write(ctx.run.summary, lambda p: summary.to_csv(p, index=False))
    if df["policy"].nunique() > 1:
        paired = [paired_comparison(df, m, baseline=ctx.cfg.study.baseline) for m in HEADLINE_METRICS]
        table = pd.concat(paired, ignore_index=True)
        atomic_write(ctx.run.paired, lambda p: table.to_csv(p, index=False))


def stage_report(ctx: StudyContext) -> None:
    build_report(ctx.run.root)


@dataclass(frozen=True)
class Stage:
    name: str
    artifact: Callable[[RunDir], Path]
    run: Callable[[StudyContext], None]
    always: bool = False  # run every time: it resumes inside (grid) or only summarises other artifacts


STAGES: tuple[Stage, ...] = (
    Stage("audit", lambda r: r.audit, stage_audit),
    Stage("splits", lambda r: r.splits, stage_splits),
    Stage("samples", lambda r: r.real_grid, stage_samples),
    Stage("generators", lambda r: r.generators, stage_generators, always=True),
    Stage("banks", lambda r: r.banks, stage_banks, always=True),
    Stage("quality", lambda r: r.quality, stage_quality, always=True),
    Stage("classifiers", lambda r: r.results, stage_classifiers, always=True),
    Stage("statistics", lambda r: r.summary, stage_statistics, always=True),
    Stage("explain", lambda r: r.cams, stage_explain),
    Stage("report", lambda r: r.report, stage_report, always=True),
)


def run_study(cfg: SynthaugConfig, out: Path, force: set[str] | None = None) -> RunDir:
    """Run every stage whose artifact is missing (or forced); return the run directory."""
    force = force or set()
    unknown = force - {s.name for s in STAGES}
    if unknown:
        raise ValueError(f"--force names unknown stage(s) {sorted(unknown)}; stages are {[s.name for s in STAGES]}")
    run = RunDir(out)
    run.init(cfg)
    ctx = StudyContext(cfg, run)
    for stage in STAGES:
        if stage.artifact(run).exists() and stage.name not in force and not stage.always:
            log.info("stage %s: complete, skipped", stage.name)
            continue
        log.info("stage %s: running", stage.name)
        started = time.perf_counter()
        stage.run(ctx)
        run.record_time(stage.name, time.perf_counter() - started)
    return run
