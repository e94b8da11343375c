"""Generator and bank stages: train each named generator once per (real fraction, seed) that a
policy needs, on that cell's real training subset only, then draw the banks the policies read.

Both stages run through the study's executor (one task per generator or bank), resume inside
(generator checkpoints, bank manifests) and are complete when their marker file exists.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from synthaug.augment import BankRequest, build_policy
from synthaug.augment.synthetic import _FromBank
from synthaug.config import StudyGeneratorConfig, SynthaugConfig
from synthaug.data.imageset import ImageSet
from synthaug.data.prepare import prepare_data
from synthaug.data.splits import cell_indices
from synthaug.io import read_json, write_json
from synthaug.layout import bank_dir, generator_dir
from synthaug.study.executors import make_executor

if TYPE_CHECKING:
    from synthaug.generators.base import Generator

log = logging.getLogger(__name__)
TRAINED_ON = "trained_on.json"


@dataclass(frozen=True)
class BankJob:
    bank: str
    generator: str
    fraction: float
    seed: int
    counts: tuple[int, ...]
    variation: bool


def _real_subset(cfg: SynthaugConfig, train: ImageSet, fraction: float, seed: int) -> ImageSet:
    fit_idx, _ = cell_indices(train.labels, fraction, cfg.data.val_fraction, seed)
    return train.subset(fit_idx)


def bank_jobs(cfg: SynthaugConfig, train: ImageSet) -> list[BankJob]:
    """Every bank the grid reads, sized for the largest request of any policy in each cell."""
    s = cfg.study
    jobs: dict[tuple[str, float, int], BankJob] = {}
    for seed in s.seeds:
        for fraction in s.real_fractions:
            real = _real_subset(cfg, train, fraction, seed)
            for combo in s.policies:
                for spec in combo:
                    policy = build_policy(spec)
                    if not isinstance(policy, _FromBank):
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


def needed_generators(cfg: SynthaugConfig, train: ImageSet) -> list[tuple[StudyGeneratorConfig, float, int]]:
    by_name = {g.name: g for g in cfg.study.generators}
    keys = sorted({(j.generator, j.fraction, j.seed) for j in bank_jobs(cfg, train)}, key=lambda k: (k[2], k[1], k[0]))
    return [(by_name[name], fraction, seed) for name, fraction, seed in keys]


def fit_on_cell(
    cfg: SynthaugConfig,
    train: ImageSet,
    gcfg: StudyGeneratorConfig,
    fraction: float,
    seed: int,
    out: Path,
    resume: bool = True,
) -> tuple[Generator, ImageSet]:
    """Train ``gcfg`` on the real fit subset of cell (fraction, seed) only; record the ids it saw."""
    from synthaug.generators import fit

    real = _real_subset(cfg, train, fraction, seed)
    write_json(out / TRAINED_ON, {"fraction": fraction, "seed": seed, "ids": real.ids.tolist()})
    return fit(real, gcfg.generator_config(), out, seed=seed, resume=resume), real


def _fit_task(cfg: SynthaugConfig, run_root: Path, gcfg: StudyGeneratorConfig, fraction: float, seed: int) -> str:
    train = prepare_data(cfg.data, seed=cfg.study.seeds[0]).train  # cached decode
    out = generator_dir(run_root, gcfg.name, fraction, seed)
    fit_on_cell(cfg, train, gcfg, fraction, seed, out)
    return str(out)


def run_generators(cfg: SynthaugConfig, run_root: Path) -> int:
    """Train every generator the policies need that has no ``generator.pt`` yet; returns how many."""
    train = prepare_data(cfg.data, seed=cfg.study.seeds[0]).train
    todo = [
        (g, f, s) for g, f, s in needed_generators(cfg, train)
        if not (generator_dir(run_root, g.name, f, s) / "generator.pt").exists()
    ]  # fmt: skip
    if not todo:
        log.info("generators: all trained")
        return 0
    log.info("generators: %d to train (%s)", len(todo), ", ".join(f"{g.name} f{f:g} s{s}" for g, f, s in todo))
    tasks = [functools.partial(_fit_task, cfg, run_root, g, f, s) for g, f, s in todo]
    _run(cfg, tasks, "generator")
    return len(todo)


def _bank_task(cfg: SynthaugConfig, run_root: Path, job: BankJob) -> str:
    from synthaug.generators import load_generator, write_bank

    b = cfg.study.bank
    gen = load_generator(generator_dir(run_root, job.generator, job.fraction, job.seed) / "generator.pt")
    sources = None
    if job.variation:
        train = prepare_data(cfg.data, seed=cfg.study.seeds[0]).train
        sources = _real_subset(cfg, train, job.fraction, job.seed)
    out = bank_dir(run_root, job.bank, job.fraction, job.seed)
    counts = {c: n for c, n in enumerate(job.counts) if n > 0}
    write_bank(gen, out, counts, seed=job.seed, sampler=b.sampler, steps=b.steps, guidance=b.guidance,
               batch_size=b.batch_size, sources=sources, strength=b.variation_strength)  # fmt: skip
    write_json(out / "complete.json", {"counts": list(job.counts)})
    return str(out)


def bank_complete(run_root: Path, job: BankJob) -> bool:
    marker = bank_dir(run_root, job.bank, job.fraction, job.seed) / "complete.json"
    return marker.exists() and read_json(marker)["counts"] == list(job.counts)


def run_banks(cfg: SynthaugConfig, run_root: Path) -> int:
    """Draw every bank the policies read (resuming partial ones); returns how many were (re)drawn."""
    train = prepare_data(cfg.data, seed=cfg.study.seeds[0]).train
    todo = [j for j in bank_jobs(cfg, train) if not bank_complete(run_root, j)]
    if not todo:
        log.info("banks: all drawn")
        return 0
    log.info("banks: %d to draw (%d images)", len(todo), sum(sum(j.counts) for j in todo))
    _run(cfg, [functools.partial(_bank_task, cfg, run_root, j) for j in todo], "bank")
    return len(todo)


def _run(cfg: SynthaugConfig, tasks: Sequence[Callable[[], Any]], what: str) -> None:
    cuda = cfg.study.device.startswith("cuda") or (cfg.study.device == "auto" and _cuda())
    executor = make_executor(cfg.study.workers, cfg.study.memory_per_worker_gb, cuda)
    for done, (_, out) in enumerate(executor.run(tasks), 1):
        log.info("%s %d/%d done: %s", what, done, len(tasks), out)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
