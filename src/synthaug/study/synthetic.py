"""Generator and bank stages: train each named generator once per (real fraction, seed) that a
policy needs, on that cell's real training subset only, then draw the banks the policies read.

Both stages run through the study's executor (one task per generator or bank), resume inside
(generator checkpoints, bank manifests) and are complete when their marker file exists.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from synthaug.augment import BankPolicy, BankRequest, build_policy
from synthaug.config import ConfigError, GeneratorConfig, SynthaugConfig
from synthaug.data.cells import Cell
from synthaug.data.imageset import ImageSet
from synthaug.data.prepare import prepared
from synthaug.io import read_json, write_json
from synthaug.rundir import BANK_COMPLETE, GENERATOR, TRAINED_ON, RunDir, cell_key
from synthaug.study.executors import Task, run_tasks

if TYPE_CHECKING:
    from synthaug.generators.base import Generator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BankJob:
    bank: str
    generator: str
    fraction: float
    seed: int
    counts: tuple[int, ...]
    variation: bool


def study_cell(cfg: SynthaugConfig, train: ImageSet, fraction: float, seed: int, run: RunDir | None = None) -> Cell:
    """The (fraction, seed) cell of the study: its real subset and validation split of ``train``."""
    return Cell.of(train, fraction, seed, cfg.data.val_fraction, run)


def bank_jobs(cfg: SynthaugConfig, train: ImageSet) -> list[BankJob]:
    """Every bank the grid reads, sized for the largest request of any policy in each cell."""
    s = cfg.study
    jobs: dict[tuple[str, float, int], BankJob] = {}
    for seed in s.seeds:
        for fraction in s.real_fractions:
            real = study_cell(cfg, train, fraction, seed).fit(train)
            for spec in s.all_specs():
                policy = build_policy(spec)
                if not isinstance(policy, BankPolicy):
                    continue
                req: BankRequest = policy.request(real, fraction)
                counts = req.counts
                if req.filtered:
                    counts = np.ceil(counts * (1 + s.bank.filter_reserve)).astype(np.int64)
                key = (req.bank, fraction, seed)
                if key in jobs:
                    counts = np.maximum(counts, jobs[key].counts)
                jobs[key] = BankJob(req.bank, req.generator, fraction, seed, tuple(int(c) for c in counts),
                                    req.variation)  # fmt: skip
    return list(jobs.values())


def check_bank_growth(previous: SynthaugConfig, cfg: SynthaugConfig, train: ImageSet) -> None:
    """Refuse a grown study (:mod:`synthaug.config.growth`) whose added arms ask a bank for more images.

    Earlier cells trained on those banks and the quality stage scored them as drawn; a bigger
    bank would leave both describing a bank that no longer exists. New banks are fine.
    """
    before = {(j.bank, j.fraction, j.seed): j.counts for j in bank_jobs(previous, train)}
    for job in bank_jobs(cfg, train):
        had = before.get((job.bank, job.fraction, job.seed))
        if had is not None and had != job.counts:
            raise ConfigError(
                f"the added arms need bank '{job.bank}' of cell {cell_key(job.fraction, job.seed)} to hold "
                f"{sum(job.counts)} images ({list(job.counts)} per class), but it holds {sum(had)} ({list(had)}): "
                "grow a study only by arms its banks already serve (the same or a smaller y), or use a new --out folder"
            )


def needed_generators(cfg: SynthaugConfig, train: ImageSet) -> list[tuple[GeneratorConfig, float, int]]:
    by_name = {g.name: g for g in cfg.study.generators}
    keys = sorted({(j.generator, j.fraction, j.seed) for j in bank_jobs(cfg, train)}, key=lambda k: (k[2], k[1], k[0]))
    return [(by_name[name], fraction, seed) for name, fraction, seed in keys]


def fit_on_cell(
    train: ImageSet,
    gcfg: GeneratorConfig,
    cell: Cell,
    out: Path,
    resume: bool = True,
    pool: str = "labelled",
    start: Path | None = None,
) -> tuple[Generator, ImageSet]:
    """Train ``gcfg`` on the real fit subset of ``cell``, and with ``pool="unlabelled_rest"`` on the rest
    of the training split without labels (never the cell's validation images, never the test split)
    where the family can learn from unlabelled images; record the ids it saw, with and without labels.
    ``start``: the folder of a generator pretrained on the shared pool without labels; this fit
    fine-tunes it on the cell's labelled images alone (label dropout keeps its null class trained)."""
    from synthaug.generators import fit, load_generator

    real = cell.fit(train)
    # With a start, the unlabelled images were learned in the pool's pretraining: fine-tune on the labels.
    rest = cell.rest(train) if pool == "unlabelled_rest" and start is None else None
    if rest is not None and not (gcfg.unlabelled and gcfg.mode == "conditional"):
        log.info("generator %s (%s, %s) has no null class: trained on the labelled images only",
                 gcfg.name, gcfg.family, gcfg.mode)  # fmt: skip
        rest = None
    unlabelled = [] if rest is None else rest.ids.tolist()
    record = {"fraction": cell.fraction, "seed": cell.seed, "ids": real.ids.tolist(), "unlabelled_ids": unlabelled}
    begin = None
    if start is not None:
        begin = load_generator(start / GENERATOR)
        record["started_from"] = {"dir": str(start), "checkpoint": begin.checkpoint_hash}
    write_json(out / TRAINED_ON, record)
    return fit(real, gcfg, out, seed=cell.seed, resume=resume, unlabelled=rest, start=begin), real


def shared_pool(cfg: SynthaugConfig, train: ImageSet) -> np.ndarray:
    """Indices of the training split that no cell of the study validates on (sorted): what a generator
    with ``pool_steps`` pretrains on once, without labels, before each cell fine-tunes it."""
    keep = np.ones(len(train), dtype=bool)
    for seed in cfg.study.seeds:
        for fraction in cfg.study.real_fractions:
            keep[study_cell(cfg, train, fraction, seed).val_idx] = False
    return np.flatnonzero(keep)


def pool_dir(cfg: SynthaugConfig, run: RunDir, train: ImageSet, gcfg: GeneratorConfig) -> Path | None:
    """``RUN/generators/NAME/pool_HASH/`` of a generator that pretrains on the shared pool, else None.
    The hash is of the pool's ids, so a folder names exactly the images it was trained on."""
    if not gcfg.pool_steps or cfg.study.generator_pool != "unlabelled_rest":
        return None
    ids = train.ids[shared_pool(cfg, train)]
    digest = hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()[:10]
    return run.generators / gcfg.name / f"pool_{digest}"


def _pool_task(cfg: SynthaugConfig, run: RunDir, gcfg: GeneratorConfig) -> str:
    from synthaug.generators import fit

    train = prepared(cfg.data, seed=cfg.study.seeds[0]).train
    out = pool_dir(cfg, run, train, gcfg)
    assert out is not None
    pool = train.subset(shared_pool(cfg, train))
    none = train.subset(np.zeros(0, dtype=np.int64))  # no labelled image: every one is the null class
    write_json(out / TRAINED_ON, {"pool": True, "ids": [], "unlabelled_ids": pool.ids.tolist()})
    fit(none, gcfg.model_copy(update={"steps": gcfg.pool_steps}), out, seed=cfg.study.seeds[0], resume=True,
        unlabelled=pool)  # fmt: skip
    return str(out)


def _fit_task(cfg: SynthaugConfig, run: RunDir, gcfg: GeneratorConfig, fraction: float, seed: int) -> str:
    train = prepared(cfg.data, seed=cfg.study.seeds[0]).train
    cell = study_cell(cfg, train, fraction, seed, run)
    out = cell.generator_dir(gcfg.name)
    fit_on_cell(train, gcfg, cell, out, pool=cfg.study.generator_pool, start=pool_dir(cfg, run, train, gcfg))
    return str(out)


def run_generators(cfg: SynthaugConfig, run: RunDir) -> int:
    """Train every generator the policies need that has no ``generator.pt`` yet; returns how many."""
    train = prepared(cfg.data, seed=cfg.study.seeds[0]).train
    todo = [
        (g, f, s) for g, f, s in needed_generators(cfg, train)
        if not (run.generator_dir(g.name, f, s) / GENERATOR).exists()
    ]  # fmt: skip
    pools = {g.name: (g, d) for g, _, _ in todo if (d := pool_dir(cfg, run, train, g)) and not (d / GENERATOR).exists()}
    if pools:  # trained once, before the cells that fine-tune them
        log.info("generators: %d to pretrain on the shared unlabelled pool (%d images): %s", len(pools),
                 len(shared_pool(cfg, train)), ", ".join(pools))  # fmt: skip
        tasks = [Task(f"{name} pool", functools.partial(_pool_task, cfg, run, g)) for name, (g, _) in pools.items()]
        for _, out in run_tasks(cfg.study, run, "generator", tasks):
            log.info("pool generator done: %s", out)
    if not todo:
        log.info("generators: all trained")
        return 0
    log.info("generators: %d to train (%s)", len(todo), ", ".join(f"{g.name} f{f:g} s{s}" for g, f, s in todo))
    tasks = [Task(f"{g.name} {cell_key(f, s)}", functools.partial(_fit_task, cfg, run, g, f, s)) for g, f, s in todo]
    for done, (_, out) in enumerate(run_tasks(cfg.study, run, "generator", tasks), 1):
        log.info("generator %d/%d done: %s", done, len(tasks), out)
    return len(todo)


def _bank_task(cfg: SynthaugConfig, run: RunDir, job: BankJob) -> str:
    from synthaug.generators import load_generator, write_bank

    b = cfg.study.bank
    gen = load_generator(run.generator_dir(job.generator, job.fraction, job.seed) / GENERATOR)
    sources = None
    if job.variation:
        train = prepared(cfg.data, seed=cfg.study.seeds[0]).train
        sources = study_cell(cfg, train, job.fraction, job.seed).fit(train)
    out = run.bank_dir(job.bank, job.fraction, job.seed)
    counts = {c: n for c, n in enumerate(job.counts) if n > 0}
    write_bank(gen, out, counts, seed=job.seed, sampler=b.sampler, steps=b.steps, guidance=b.guidance,
               batch_size=b.batch_size, sources=sources, strength=b.variation_strength)  # fmt: skip
    write_json(out / BANK_COMPLETE, {"counts": list(job.counts)})
    return str(out)


def bank_complete(run: RunDir, job: BankJob) -> bool:
    marker = run.bank_dir(job.bank, job.fraction, job.seed) / BANK_COMPLETE
    return marker.exists() and read_json(marker)["counts"] == list(job.counts)


def run_banks(cfg: SynthaugConfig, run: RunDir) -> int:
    """Draw every bank the policies read (resuming partial ones); returns how many were (re)drawn."""
    train = prepared(cfg.data, seed=cfg.study.seeds[0]).train
    todo = [j for j in bank_jobs(cfg, train) if not bank_complete(run, j)]
    if not todo:
        log.info("banks: all drawn")
        return 0
    log.info("banks: %d to draw (%d images)", len(todo), sum(sum(j.counts) for j in todo))
    tasks = [Task(f"{j.bank} {cell_key(j.fraction, j.seed)}", functools.partial(_bank_task, cfg, run, j)) for j in todo]
    for done, (_, out) in enumerate(run_tasks(cfg.study, run, "bank", tasks), 1):
        log.info("bank %d/%d done: %s", done, len(tasks), out)
    return len(todo)
