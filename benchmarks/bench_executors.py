"""Cost of the executors: per-task overhead (an empty task) and the throughput of a 24-cell tiny
classifier grid on 2 Ray workers and through submitit's local executor, against the local
process pool with 2 processes, measured in the same run (alternating repeats).

    python benchmarks/bench_executors.py [--repeats 2] [--empty 24]

Goal: grid throughput on Ray >= 0.9 x the local pool's. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import ray

from synthaug.config import load_config
from synthaug.rundir import RunDir
from synthaug.study.cluster import RayExecutor, SlurmExecutor
from synthaug.study.executors import LocalProcessExecutor, Task, run_all
from synthaug.study.runner import run_study

GRID = """
data: {source: phantom, size: 32, phantom: {n: 240}}
study:
  seeds: [0, 1, 2, 3, 4, 5]
  real_fractions: [1.0]
  policies: [[], ["classical:p=0.2"], ["classical:p=0.5"], [trivialaugment]]
  device: cpu
quality: {explain: {enabled: false}}
train: {epochs: 6, batch_size: 32, patience: 0, threads: 1}
"""
BACKENDS = {
    "local pool, 2 processes": ["study.workers=2"],
    "ray, 2 CPUs": ["study.executor=ray"],
    "submitit local, 2 at once": [
        "study.executor=slurm",
        "study.slurm.cluster=local",
        "study.slurm.array_parallelism=2",
    ],
}


def _empty() -> None:
    return None


def overhead(n: int, work: Path) -> dict[str, float]:
    """Seconds per empty task, end to end (submit, run, collect), for each backend."""
    cfg = load_config(_write(work, ""), ["study.executor=ray"])
    slurm = load_config(_write(work, ""), ["study.executor=slurm", "study.slurm.cluster=local"])
    engines = {
        "local pool, 2 processes": LocalProcessExecutor(2),
        "ray, 2 CPUs": RayExecutor(cfg.study, "classifier"),
        "submitit local, 2 at once": SlurmExecutor(slurm.study, "classifier", work / "slurm"),
    }
    out = {}
    for name, engine in engines.items():
        tasks = [Task(f"empty {i}", _empty) for i in range(n)]
        run_all(engine, tasks[:2])  # warm: workers started, modules imported
        start = time.perf_counter()
        run_all(engine, tasks)
        out[name] = (time.perf_counter() - start) / n
    return out


def _write(work: Path, text: str) -> Path:
    path = work / "grid.yaml"
    path.write_text(text or GRID)
    return path


def grid_seconds(work: Path, sets: list[str], tag: str) -> tuple[float, float]:
    """(wall seconds of the whole study, seconds in its classifier stage)."""
    out = work / tag
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    run = run_study(load_config(_write(work, GRID), sets), out)
    wall = time.perf_counter() - start
    return wall, RunDir(run.root).stage_times()["classifiers"]["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--empty", type=int, default=24)
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        per_task = overhead(args.empty, work)
        walls: dict[str, list[float]] = {name: [] for name in BACKENDS}
        stages: dict[str, list[float]] = {name: [] for name in BACKENDS}
        grid_seconds(work, BACKENDS["local pool, 2 processes"], "warm")  # decode cache, page cache
        for r in range(args.repeats):
            for name, sets in BACKENDS.items():
                wall, stage = grid_seconds(work, sets, f"{r}-{name.split()[0]}")
                walls[name].append(wall)
                stages[name].append(stage)
    ray.shutdown()
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} cores, python {platform.python_version()}, ray {ray.__version__}")
    print(f"\nper-task overhead ({args.empty} empty tasks, after warm-up):")
    for name, seconds in per_task.items():
        print(f"  {name:<28} {seconds * 1000:8.1f} ms/task")
    ref = statistics.median(stages["local pool, 2 processes"])
    print(f"\n24-cell grid, classifier stage, {args.repeats} repeats (throughput ratio = local pool time / time):")
    for name in BACKENDS:
        s, w = statistics.median(stages[name]), statistics.median(walls[name])
        print(f"  {name:<28} stage {s:7.1f} s ({s / 24:5.2f} s/cell)  whole study {w:7.1f} s  ratio {ref / s:5.2f}")


if __name__ == "__main__":
    main()
