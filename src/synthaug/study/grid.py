"""The classifier grid of a study: model × policy × real fraction × seed, one task per cell.

Each task re-reads its inputs from disk (the decoded-data cache, prepared once per worker
process) and writes its own cell folder atomically; the parent process alone appends rows to
``results.parquet``, so workers never write the same file. A cell with ``metrics.json`` is
complete and is never trained again.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

from synthaug.classifiers.cell import run_cell
from synthaug.config import ClassifierConfig, ModelConfig, PolicySpec, SynthaugConfig
from synthaug.data.prepare import prepared
from synthaug.io import read_json
from synthaug.rundir import CELL_METRICS, RunDir, cell_id, normalize_policies
from synthaug.study.executors import Task, run_tasks
from synthaug.study.synthetic import study_cell

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifierJob:
    """One classifier of the grid: a model and a policy combination on the (fraction, seed) cell."""

    model: ModelConfig
    policies: tuple[PolicySpec, ...]
    fraction: float
    seed: int

    @property
    def id(self) -> str:
        return cell_id(self.model.label(), list(self.policies), self.fraction, self.seed)


def grid_jobs(cfg: SynthaugConfig) -> list[ClassifierJob]:
    """Every classifier of the study, seeds outermost so an interrupted study has whole seeds done first."""
    s = cfg.study
    return [
        ClassifierJob(model, tuple(normalize_policies(list(policies))), frac, seed)
        for seed in s.seeds
        for frac in s.real_fractions
        for model in s.models
        for policies in s.policies
    ]


def _run_one(cfg: SynthaugConfig, run: RunDir, job: ClassifierJob) -> dict[str, Any]:
    data = prepared(cfg.data, seed=cfg.study.seeds[0])
    # Synthetic policies read the banks of this cell: generators that saw only its real subset.
    cell = study_cell(cfg, data.train, job.fraction, job.seed, run)
    ccfg = ClassifierConfig(model=job.model, train=cfg.train)
    out = run.classifier_dir(job.id)
    return run_cell(data.train, data.test, ccfg, list(job.policies), cell, out, device=cfg.study.device)


def run_classifier_grid(cfg: SynthaugConfig, run: RunDir) -> int:
    """Train every incomplete cell (in the configured executor); returns how many were trained."""
    todo: list[ClassifierJob] = []
    finished: list[dict[str, Any]] = []
    for job in grid_jobs(cfg):
        metrics = run.classifier_dir(job.id) / CELL_METRICS
        if metrics.exists():
            finished.append(read_json(metrics)["row"])
        else:
            todo.append(job)
    run.append_results(finished)  # idempotent: replaces rows by cell id, one write for every finished cell
    if not todo:
        log.info("classifier grid: all cells complete")
        return 0
    log.info("classifier grid: %d cells to train", len(todo))
    tasks = [Task(job.id, functools.partial(_run_one, cfg, run, job)) for job in todo]
    for done, (_, row) in enumerate(run_tasks(cfg.study, run, "classifier", tasks), 1):
        run.append_result(row)
        log.info("cell %d/%d done: %s (test accuracy %.3f)", done, len(todo), row["cell_id"], row["test_accuracy"])
    return len(todo)
