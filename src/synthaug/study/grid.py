"""The classifier grid of a study: model × policy × real fraction × seed, one task per cell.

Each task re-reads its inputs from disk (the decoded-data cache) and writes its own cell folder
atomically; the parent process alone appends rows to ``results.parquet``, so workers never
write the same file. A cell with ``metrics.json`` is complete and is never trained again.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthaug.augment import PolicyContext, PolicySpec
from synthaug.classifiers import ClassifierConfig, ModelConfig
from synthaug.classifiers.cell import append_result, cell_id, normalize_policies, run_cell
from synthaug.config import SynthaugConfig
from synthaug.data.prepare import prepare_data
from synthaug.io import read_json
from synthaug.study.executors import make_executor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cell:
    model: ModelConfig
    policies: tuple[PolicySpec, ...]
    fraction: float
    seed: int

    @property
    def id(self) -> str:
        return cell_id(self.model.label(), list(self.policies), self.fraction, self.seed)


def grid_cells(cfg: SynthaugConfig) -> list[Cell]:
    """Every cell of the study, seeds outermost so an interrupted study has whole seeds done first."""
    s = cfg.study
    return [
        Cell(model, tuple(normalize_policies(list(policies))), frac, seed)
        for seed in s.seeds
        for frac in s.real_fractions
        for model in s.models
        for policies in s.policies
    ]


def _run_one(cfg: SynthaugConfig, run_root: Path, cell: Cell) -> dict[str, Any]:
    data = prepare_data(cfg.data, seed=cfg.study.seeds[0])  # cached decode: seconds, not minutes
    ccfg = ClassifierConfig(model=cell.model, train=cfg.train)
    out = run_root / "classifiers" / cell.id
    # Synthetic policies read the banks of this (fraction, seed): generators that saw only its real subset.
    context = PolicyContext(run_dir=run_root, extras={"fraction": cell.fraction, "seed": cell.seed})
    return run_cell(
        data.train, data.test, ccfg, list(cell.policies), cell.fraction, cell.seed, out,
        val_fraction=cfg.data.val_fraction, device=cfg.study.device, context=context,
    )  # fmt: skip


def run_classifier_grid(cfg: SynthaugConfig, run_root: Path) -> int:
    """Train every incomplete cell (in the configured executor); returns how many were trained."""
    results = run_root / "results.parquet"
    todo: list[Cell] = []
    for cell in grid_cells(cfg):
        metrics = run_root / "classifiers" / cell.id / "metrics.json"
        if metrics.exists():
            append_result(results, read_json(metrics)["row"])  # idempotent: replaces the row by cell id
        else:
            todo.append(cell)
    if not todo:
        log.info("classifier grid: all cells complete")
        return 0
    log.info("classifier grid: %d cells to train", len(todo))
    cuda = cfg.study.device.startswith("cuda") or (cfg.study.device == "auto" and _cuda())
    executor = make_executor(cfg.study.workers, cfg.study.memory_per_worker_gb, cuda)
    tasks = [functools.partial(_run_one, cfg, run_root, cell) for cell in todo]
    for done, (_, row) in enumerate(executor.run(tasks), 1):
        append_result(results, row)
        log.info("cell %d/%d done: %s (test accuracy %.3f)", done, len(todo), row["cell_id"], row["test_accuracy"])
    return len(todo)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
