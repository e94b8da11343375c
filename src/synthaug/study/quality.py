"""The quality stage: can the synthetic images be trusted?

For every (real fraction, seed) cell that has banks, one task (run through the study's
executor, like the grid) does:

1. train or reuse the cell's judge classifier (``study/judges.py``);
2. measure every bank of the cell against the cell's real images (``study/measure.py``):
   ``banks/<bank>/f<frac>_s<seed>/scores.parquet`` holds the judge's confidence in the intended
   class and the memorization flag of every image (the ``min_confidence`` / ``drop_memorized``
   filters read it) and ``quality.json`` next to it caches the bank's figures;
3. for the configured cells, TSTR next to the judge (TRTR).

The main process gathers the cells' results into ``RUN_DIR/quality.json``.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from synthaug.config import QualityConfig, SynthaugConfig
from synthaug.data.prepare import prepared
from synthaug.device import pick_device
from synthaug.generators.bank import load_bank
from synthaug.io import write_json
from synthaug.metrics.features import FeatureExtractor, InceptionFeatures
from synthaug.rundir import VARIATION_SUFFIX, BankRef, RunDir, cell_key
from synthaug.study.executors import Task, run_tasks
from synthaug.study.judges import RealCell, cell_judge, tstr
from synthaug.study.measure import measure_bank, reference
from synthaug.study.synthetic import study_cell

log = logging.getLogger(__name__)


def real_cell(cfg: SynthaugConfig, fraction: float, seed: int) -> RealCell:
    """The real images of a study cell: its fit and val subsets of the training split, and the test set."""
    data = prepared(cfg.data, seed=cfg.study.seeds[0])
    cell = study_cell(cfg, data.train, fraction, seed)
    return RealCell(cell.fit(data.train), cell.val(data.train), data.test)


def _tstr_cells(cfg: SynthaugConfig, q: QualityConfig) -> set[str]:
    if not q.tstr:
        return set()
    fractions = q.tstr_fractions or [max(cfg.study.real_fractions)]
    seeds = q.tstr_seeds or [cfg.study.seeds[0]]
    return {cell_key(f, s) for f in fractions for s in seeds}


def quality_cell(
    cfg: SynthaugConfig, q: QualityConfig, run: RunDir, banks: list[BankRef], with_tstr: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One cell's task: its judge and yardstick record, and one entry per measured bank."""
    fraction, seed = banks[0].fraction, banks[0].seed
    key, device = cell_key(fraction, seed), pick_device(cfg.study.device)
    shared: dict[str, FeatureExtractor] = {}
    if q.inception_weights:
        shared["inception"] = InceptionFeatures(q.inception_weights).to(device)
    real, out = real_cell(cfg, fraction, seed), run.judge_dir(fraction, seed)
    judge, record = cell_judge(cfg, q, real, key, out, seed, shared, device)
    entries = []
    for ref in banks:
        bank, manifest = load_bank(ref.path)
        if len(bank) == 0:
            log.warning("quality: bank %s %s holds no images; skipped", ref.name, ref.cell)
            continue
        external = ref.name.removesuffix(VARIATION_SUFFIX) in {g.name for g in cfg.study.generators if g.external}
        entry = measure_bank(ref, bank, manifest, real, judge, q, external)
        tstr_out = run.tstr_dir(fraction, seed, ref.name)
        tstr_metrics = tstr(cfg, q, bank, real, tstr_out, seed, device) if with_tstr else None
        entries.append({**entry, "tstr": tstr_metrics})
    return {"judge": record, **reference(real, judge, q, out, seed)}, entries


def run_quality(cfg: SynthaugConfig, run: RunDir, settings: QualityConfig | None = None) -> dict[str, Any]:
    """Measure every bank of the run directory; write ``RUN_DIR/quality.json`` and return its content.

    Resumable: judges (``RUN_DIR/judges/<cell>/``), TSTR classifiers and per-bank results are
    cached and reused; a bank whose images or judge changed is measured again.
    ``settings`` defaults to ``cfg.quality``.
    """
    q = settings or cfg.quality
    banks = run.find_banks()
    if not q.enabled or not banks:
        log.info("quality: %s", "disabled" if not q.enabled else "no synthetic banks to measure")
        return {}
    if q.inception_weights and not Path(q.inception_weights).is_file():
        raise FileNotFoundError(f"quality.inception_weights: no file at {q.inception_weights!r}")
    cells = sorted({(r.fraction, r.seed) for r in banks}, key=lambda fs: (fs[1], fs[0]))
    keys, tstr_cells = [cell_key(f, s) for f, s in cells], _tstr_cells(cfg, q)
    tasks = [
        Task(key, functools.partial(quality_cell, cfg, q, run, [r for r in banks if r.cell == key], key in tstr_cells))
        for key in keys
    ]
    results: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for done, (i, cell_result) in enumerate(run_tasks(cfg.study, run, "quality", tasks), 1):
        results[keys[i]] = cell_result
        log.info("quality: cell %s done (%d/%d)", keys[i], done, len(keys))
    records = {key: results[key][0] for key in keys}  # in cell order, whatever order tasks finished in
    entries = [e for key in keys for e in results[key][1]]
    names = sorted({net["feature_network"] for e in entries for v in e["quality"].values() for net in v.values()})
    result = {"settings": q.model_dump(mode="json"), "feature_networks": names, "cells": records, "banks": entries}
    write_json(run.quality, result)
    log.info("quality: %d banks in %d cells measured; wrote %s", len(entries), len(records), run.quality)
    return result
