"""Executors run independent tasks (generator fits, banks, quality cells, classifier cells, Grad-CAM):
serially or in a process pool.

Tasks are plain picklable callables with their inputs on disk and atomic outputs, so an
executor on another engine (a cluster scheduler) can replace the local one without touching
the study logic.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import torch

if TYPE_CHECKING:
    from synthaug.config.study import StudyConfig

log = logging.getLogger(__name__)
T = TypeVar("T")


class Executor(Protocol):
    """Runs tasks, yielding (task index, result) as each finishes."""

    def run(self, tasks: Sequence[Callable[[], T]]) -> Iterator[tuple[int, T]]: ...


class SerialExecutor:
    def run(self, tasks: Sequence[Callable[[], T]]) -> Iterator[tuple[int, T]]:
        for i, task in enumerate(tasks):
            yield i, task()


def _call_with_threads(task: Callable[[], Any], threads: int) -> Any:
    # Each worker gets its share of the cores; otherwise N workers x all cores thrash.
    torch.set_num_threads(threads)
    return task()


class LocalProcessExecutor:
    """A process pool on this machine; ``workers`` processes share the CPU cores evenly."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"study.workers must be >= 1, got {workers}")
        self.workers = workers

    def run(self, tasks: Sequence[Callable[[], T]]) -> Iterator[tuple[int, T]]:
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        pool = ProcessPoolExecutor(self.workers)
        try:
            futures = {pool.submit(_call_with_threads, t, threads): i for i, t in enumerate(tasks)}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        except BaseException:
            # Interrupted or a task failed: stop the workers now instead of waiting for their tasks
            # (finished tasks' outputs are on disk; unfinished ones rerun when the study resumes).
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux); a conservative 4 GiB elsewhere."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def default_workers(memory_per_worker_gb: float, cuda: bool) -> int:
    """As many workers as cores and free memory allow (one on a single GPU: cells share it badly)."""
    if cuda:
        return 1
    by_memory = int(available_memory_bytes() // (memory_per_worker_gb * (1 << 30)))
    return max(1, min(os.cpu_count() or 1, by_memory))


def make_executor(workers: int | None, memory_per_worker_gb: float = 2.0, cuda: bool = False) -> Executor:
    n = workers or default_workers(memory_per_worker_gb, cuda)
    log.info("executor: %s", "serial" if n == 1 else f"{n} local processes")
    return SerialExecutor() if n == 1 else LocalProcessExecutor(n)


def study_executor(study: StudyConfig) -> Executor:
    """The executor a study's settings ask for (``study.workers``, ``study.device``)."""
    cuda = study.device.startswith("cuda") or (study.device == "auto" and torch.cuda.is_available())
    return make_executor(study.workers, study.memory_per_worker_gb, cuda)


def run_tasks(study: StudyConfig, tasks: Sequence[Callable[[], T]]) -> Iterator[tuple[int, T]]:
    """Run ``tasks`` in the study's executor, yielding (task index, result) as each finishes."""
    return study_executor(study).run(tasks)


def run_all(executor: Executor, tasks: Iterable[Callable[[], T]]) -> list[T]:
    """Run every task and return results in task order."""
    task_list = list(tasks)
    results: list[Any] = [None] * len(task_list)
    for i, res in executor.run(task_list):
        results[i] = res
    return results
