"""Executors run a stage's independent tasks (generator fits, banks, quality cells, classifier
cells, Grad-CAM): serially, in a local process pool, on a Ray cluster, or as SLURM job arrays
through submitit (``study.executor``).

Tasks are named, picklable callables whose inputs are on disk and whose outputs are written
atomically, so any engine can run them and a task that dies is simply run again: the resume
contract is the same for every backend. Every engine runs a task through :func:`execute`, which
sets its torch threads to the task's share of cores and reports where and how long it ran; the
main process alone writes ``results.parquet`` and the task log (``RUN_DIR/executor/tasks.jsonl``).

Failures: the local engines stop at the first failed task (on one machine a failure is
usually one that every task would meet). The cluster engines go on with the other tasks, log
each failure's traceback with its task name, and raise :class:`TasksFailed` naming them at the
end of the stage; running the same command again retries only those.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import connection as mp_connection
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from tqdm.auto import tqdm

from synthaug.config.execution import TaskKind

if TYPE_CHECKING:
    from synthaug.config.study import StudyConfig
    from synthaug.rundir import RunDir

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Task:
    """One unit of work: ``name`` says which (a cell id, a generator and its cell) in logs and errors."""

    name: str
    fn: Callable[[], Any]


@dataclass
class Outcome:
    """What a task gave back: its value and where it ran, or the error it raised."""

    value: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class TasksFailed(RuntimeError):
    """Some tasks of a stage failed on a cluster engine; the others finished and are kept."""

    def __init__(self, kind: str, failures: list[tuple[str, str]], total: int) -> None:
        self.kind, self.failures = kind, failures
        named = "; ".join(f"{name} ({reason})" for name, reason in failures[:10])
        more = f" and {len(failures) - 10} more" if len(failures) > 10 else ""
        super().__init__(
            f"{len(failures)} of {total} {kind} tasks failed: {named}{more}. Their tracebacks are in the log above; "
            "the other tasks' results are kept: run the same command again to retry the failed ones"
        )


class Executor(Protocol):
    """Runs tasks, yielding (task index, outcome) as each finishes."""

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Outcome]]: ...


def _node_id() -> str:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        try:
            return str(ray.get_runtime_context().get_node_id())
        except Exception:  # not inside a Ray worker after all
            pass
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def execute(fn: Callable[[], T], threads: int | None) -> tuple[T, dict[str, Any]]:
    """Run one task where the engine put it; ``threads``: its share of the cores (None: leave as is)."""
    if threads is not None:
        import torch

        # Each task gets its share of the cores; otherwise N tasks x all cores thrash.
        torch.set_num_threads(threads)
    started = time.time()
    value = fn()
    info = {"node": _node_id(), "host": socket.gethostname(), "pid": os.getpid(), "started": round(started, 3)}
    # The threads the task ran with (``train.threads`` may have set them; the serial engine sets none).
    loaded = sys.modules.get("torch")
    used = loaded.get_num_threads() if loaded is not None else threads
    if used is not None:
        info["threads"] = used
    return value, info | {"seconds": round(time.time() - started, 3)}


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _error_line(exc: BaseException) -> str:
    """``Type: first line`` of the error a task raised (a Ray task error's own cause, without colours)."""
    cause = getattr(exc, "cause", None)  # ray.exceptions.RayTaskError wraps the task's exception
    if isinstance(cause, BaseException):
        exc = cause
    text = _ANSI.sub("", str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _failure(exc: BaseException) -> Outcome:
    return Outcome(error=_ANSI.sub("", str(exc)) or repr(exc), info={"reason": _error_line(exc)})


# --- this machine --------------------------------------------------------------------------------
class SerialExecutor:
    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Outcome]]:
        for i, task in enumerate(tasks):
            value, info = execute(task.fn, None)
            yield i, Outcome(value, info)


def _worker_signals() -> None:
    """A pool worker dies on SIGTERM and leaves Ctrl-C to the main process. The CLI's handler, inherited
    through fork, would turn either signal into an exception that ends only the worker's current task:
    the worker would then take the next queued one, and an interrupted study would wait for it."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A blocked SIGTERM is inherited through fork too (and a default action does not undo it).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _stop_workers(pool: ProcessPoolExecutor, grace_s: float = 3.0) -> None:
    """SIGTERM every worker, then SIGKILL those still alive after ``grace_s``.

    SIGTERM alone can miss: one that reaches a worker before its initializer has run meets the
    inherited handler (and may be lost), and a task may ignore or block it itself."""
    workers = list((getattr(pool, "_processes", None) or {}).values())
    for proc in workers:
        proc.terminate()
    # A process's sentinel is ready once it has exited, whoever reaps it (the pool's thread joins them too).
    pending = {proc.sentinel: proc for proc in workers}
    deadline = time.monotonic() + grace_s
    while pending and (left := deadline - time.monotonic()) > 0:
        for ready in mp_connection.wait(list(pending), left):
            pending.pop(ready)  # type: ignore[call-overload]
    for proc in pending.values():
        log.warning("worker %s did not stop on SIGTERM within %.0f s: killing it", proc.pid, grace_s)
        proc.kill()


class LocalProcessExecutor:
    """A process pool on this machine; ``workers`` processes share the CPU cores evenly."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"study.workers must be >= 1, got {workers}")
        self.workers = workers

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Outcome]]:
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        pool = ProcessPoolExecutor(self.workers, initializer=_worker_signals)
        try:
            futures = {pool.submit(execute, t.fn, threads): i for i, t in enumerate(tasks)}
            for fut in as_completed(futures):
                value, info = fut.result()
                yield futures[fut], Outcome(value, info)
        except BaseException:
            # Interrupted or a task failed: stop the workers now instead of waiting for their tasks
            # (finished tasks' outputs are on disk; unfinished ones rerun when the study resumes).
            _stop_workers(pool)
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
    return SerialExecutor() if n == 1 else LocalProcessExecutor(n)


# --- the study's entry points --------------------------------------------------------------------
def study_executor(study: StudyConfig, kind: TaskKind = "classifier", run: RunDir | None = None) -> Executor:
    """The executor a study's settings ask for (``study.executor``, ``study.workers``, ``study.device``)."""
    if study.executor in ("ray", "slurm"):
        from synthaug.study.cluster import RayExecutor, SlurmExecutor  # optional engines, imported on use

    if study.executor == "ray":
        return RayExecutor(study, kind)
    if study.executor == "slurm":
        if run is None:
            raise ValueError("the slurm executor needs the run directory (its logs go there)")
        return SlurmExecutor(study, kind, run.slurm)
    cuda = study.device.startswith("cuda") or (study.device == "auto" and _cuda_available())
    return make_executor(study.workers, study.memory_per_worker_gb, cuda)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def run_tasks(study: StudyConfig, run: RunDir, kind: TaskKind, tasks: Sequence[Task]) -> Iterator[tuple[int, Any]]:
    """Run ``tasks`` in the study's executor, yielding (task index, result) as each finishes.

    A progress bar counts finished tasks; each finished task is logged in ``RUN_DIR/executor/tasks.jsonl``.
    A cluster engine's failed tasks are logged with their tracebacks and raised together as
    :class:`TasksFailed` once the others are done.
    """
    if not tasks:
        return
    executor = study_executor(study, kind, run)
    engine = study.executor if study.executor != "local" else type(executor).__name__
    log.info("%s: %d task(s) on %s", kind, len(tasks), engine)
    failures: list[tuple[str, str]] = []
    with tqdm(total=len(tasks), desc=kind, unit="task", disable=None, leave=False) as bar:
        for i, outcome in executor.run(tasks):
            bar.update()
            name = tasks[i].name
            if outcome.error is not None:
                log.error("%s task %s failed:\n%s", kind, name, outcome.error)
                failures.append((name, outcome.info.get("reason", "failed")))
                continue
            run.log_tasks([{"kind": kind, "task": name, "executor": study.executor, **outcome.info}])
            yield i, outcome.value
    if failures:
        raise TasksFailed(kind, failures, len(tasks))


def run_all(executor: Executor, tasks: Iterable[Task]) -> list[Any]:
    """Run every task and return results in task order (errors raise :class:`TasksFailed`)."""
    task_list = list(tasks)
    results: list[Any] = [None] * len(task_list)
    for i, outcome in executor.run(task_list):
        if outcome.error is not None:
            raise TasksFailed("", [(task_list[i].name, outcome.info.get("reason", "failed"))], len(task_list))
        results[i] = outcome.value
    return results
