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

import functools
import importlib
import importlib.util
import logging
import math
import os
import re
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from tqdm.auto import tqdm

from synthaug.config import ConfigError
from synthaug.config.execution import BACKEND_PACKAGES, TaskKind

if TYPE_CHECKING:
    from synthaug.config import SynthaugConfig
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


class LocalProcessExecutor:
    """A process pool on this machine; ``workers`` processes share the CPU cores evenly."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"study.workers must be >= 1, got {workers}")
        self.workers = workers

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Outcome]]:
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        pool = ProcessPoolExecutor(self.workers)
        try:
            futures = {pool.submit(execute, t.fn, threads): i for i, t in enumerate(tasks)}
            for fut in as_completed(futures):
                value, info = fut.result()
                yield futures[fut], Outcome(value, info)
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
    return SerialExecutor() if n == 1 else LocalProcessExecutor(n)


# --- optional backends ---------------------------------------------------------------------------
def require_backend(executor: str) -> Any:
    """Import the package ``study.executor`` needs, or say which extra installs it."""
    package, extra = BACKEND_PACKAGES[executor]
    if importlib.util.find_spec(package) is None:
        raise ConfigError(
            f"study.executor={executor} needs the '{package}' package, which is not installed: "
            f"pip install 'synthaug[{extra}]' (or set study.executor=local)"
        )
    return importlib.import_module(package)


_RAY_STARTED_HERE = False


def connect_ray(study: StudyConfig) -> Any:
    """Join the Ray cluster ``study.ray.address`` names, or start one on this machine ('')."""
    global _RAY_STARTED_HERE
    ray = require_backend("ray")
    if ray.is_initialized():
        return ray
    rc = study.ray
    if rc.address:
        try:
            ray.init(address=rc.address, log_to_driver=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"study.ray.address={rc.address!r}: cannot connect to a Ray cluster there ({_error_line(exc)}). "
                "Start one (`ray start --head`), fix the address, or leave it empty to start Ray on this machine"
            ) from exc
    else:
        cpus = rc.local_cpus or os.cpu_count() or 1
        # A small object store: tasks pass configs and return small records; images stay on disk.
        ray.init(num_cpus=cpus, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=True)
        _RAY_STARTED_HERE = True
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    log.info(
        "ray: %s, %d node(s), %g CPUs, %g GPUs",
        rc.address or "started on this machine",
        len(nodes),
        ray.cluster_resources().get("CPU", 0),
        ray.cluster_resources().get("GPU", 0),
    )
    return ray


def shutdown_backends() -> None:
    """Stop a Ray instance this process started (one it joined keeps running)."""
    global _RAY_STARTED_HERE
    if _RAY_STARTED_HERE:
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()
        _RAY_STARTED_HERE = False


@functools.cache
def _ray_execute() -> Any:
    import ray

    return ray.remote(execute)


class RayExecutor:
    """Tasks as Ray tasks, each asking for the resources of its kind (``study.resources``)."""

    def __init__(self, study: StudyConfig, kind: TaskKind) -> None:
        self.ray = connect_ray(study)
        res = study.resources.for_kind(kind)
        self.threads = res.threads()
        self.options: dict[str, Any] = {
            "num_cpus": res.cpus,
            "num_gpus": res.gpus,
            "max_retries": study.ray.max_retries,
            "retry_exceptions": False,  # a Python error is the task's own; only a dead worker/node is retried
        }
        if res.mem_gb:
            self.options["memory"] = int(res.mem_gb * 1024**3)

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Outcome]]:
        ray, remote = self.ray, _ray_execute()
        pending = {
            remote.options(name=t.name, **self.options).remote(t.fn, self.threads): i for i, t in enumerate(tasks)
        }
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    try:
                        value, info = ray.get(ref)
                    except Exception as exc:  # RayTaskError carries the remote traceback
                        yield i, _failure(exc)
                        continue
                    yield i, Outcome(value, info)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise


class _SubmititCall:
    """The callable a SLURM job runs; on pre-emption or time-out submitit requeues it, and the
    task resumes from what it had written (generators from their last checkpoint)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def __call__(self, fn: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
        value, info = execute(fn, self.threads)
        return value, info | {"job": os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID")}

    def checkpoint(self, fn: Callable[[], Any]) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, fn)


class SlurmExecutor:
    """One job array per stage through submitit (``study.slurm``); logs under ``RUN_DIR/slurm/<kind>/``.

    ``study.slurm.cluster: local`` runs the same code path with submitit's local executor (a
    process per task on this machine, at most ``array_parallelism`` at once).
    """

    def __init__(self, study: StudyConfig, kind: TaskKind, folder: Path) -> None:
        submitit = require_backend("slurm")
        sc = study.slurm
        cluster: str = sc.cluster
        if cluster == "auto":
            cluster = "slurm" if shutil.which("sbatch") else ""
            if not cluster:
                raise ConfigError(
                    "study.executor=slurm: no `sbatch` on PATH, so this is not a SLURM machine. Run the study on a "
                    "login node of the cluster, or set study.slurm.cluster=local to run the same code path here"
                )
        self.cluster, self.parallelism = cluster, sc.array_parallelism
        self.poll = 1.0 if cluster == "local" else 10.0
        res = study.resources.for_kind(kind)
        self.threads = res.threads()
        self.executor = submitit.AutoExecutor(
            folder=folder / kind / "%j", cluster=cluster, slurm_max_num_timeout=sc.max_requeues,
            local_max_num_timeout=sc.max_requeues,
        )  # fmt: skip
        params: dict[str, Any] = {
            "name": f"synthaug-{kind}",
            "timeout_min": res.time_min,
            "cpus_per_task": max(1, math.ceil(res.cpus)),
            "gpus_per_node": math.ceil(res.gpus),
            "slurm_array_parallelism": sc.array_parallelism,
        }
        if res.mem_gb:
            params["mem_gb"] = res.mem_gb
        if sc.partition:
            params["slurm_partition"] = sc.partition
        if sc.sbatch:
            params["slurm_additional_parameters"] = dict(sc.sbatch)
        self.executor.update_parameters(**params)

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Outcome]]:
        call = _SubmititCall(self.threads)
        # SLURM throttles an array itself (%parallelism); the local executor would start every job at once.
        chunk = self.parallelism if self.cluster == "local" else max(1, len(tasks))
        for start in range(0, len(tasks), chunk):
            jobs = self.executor.map_array(call, [t.fn for t in tasks[start : start + chunk]])
            log.info("slurm: submitted %d jobs (%s)", len(jobs), jobs[0].job_id.split("_")[0] if jobs else "-")
            pending = {job: start + k for k, job in enumerate(jobs)}
            try:
                while pending:
                    finished = [job for job in pending if job.done()]
                    if not finished:
                        time.sleep(self.poll)
                    for job in finished:
                        i = pending.pop(job)
                        try:
                            value, info = job.result()
                        except Exception as exc:  # FailedJobError carries the traceback
                            yield i, _failure(exc)
                            continue
                        yield i, Outcome(value, info)
            except BaseException:
                for job in pending:
                    job.cancel(check=False)
                raise


# --- the study's entry points --------------------------------------------------------------------
def study_executor(study: StudyConfig, kind: TaskKind = "classifier", run: RunDir | None = None) -> Executor:
    """The executor a study's settings ask for (``study.executor``, ``study.workers``, ``study.device``)."""
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


def _write_probe(path: str, token: str) -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(token, encoding="utf-8")
    return f"{socket.gethostname()} (node {_node_id()})"


def check_shared_filesystem(study: StudyConfig, run: RunDir, probe: Callable[[str, str], str] = _write_probe) -> None:
    """On a cluster engine, a task must see the run directory the driver sees: one writes a marker
    there and the driver reads it back, or the study stops before any work is sent out."""
    if study.executor == "local":
        return
    token = uuid.uuid4().hex
    marker = run.executor / f"probe-{token}"
    task = Task("shared-filesystem probe", functools.partial(probe, str(marker), token))
    [(_, outcome)] = list(study_executor(study, "classifier", run).run([task]))
    if outcome.error is not None:
        raise ConfigError(
            f"study.executor={study.executor}: a probe task could not write to the run directory '{run.root}': "
            f"{outcome.info.get('reason', outcome.error)}"
        )
    seen = marker.exists() and marker.read_text(encoding="utf-8") == token
    marker.unlink(missing_ok=True)
    if not seen:
        raise ConfigError(
            f"study.executor={study.executor}: a task on {outcome.value} wrote to '{run.root}', but this machine "
            "does not see what it wrote: the run directory must be on a filesystem every node mounts at the "
            "same path (NFS, Lustre, ...). Pass --out on such a filesystem"
        )


def for_tasks(cfg: SynthaugConfig) -> SynthaugConfig:
    """``cfg`` with its local paths made absolute, for tasks that run in another working directory."""
    if cfg.study.executor == "local":
        return cfg
    data, update = cfg.data, dict[str, Any]()
    for key in ("source", "cache_dir"):
        value = getattr(data, key)
        if value and Path(value).exists():
            update[key] = str(Path(value).resolve())
    if data.groups.csv and Path(data.groups.csv).exists():
        update["groups"] = data.groups.model_copy(update={"csv": str(Path(data.groups.csv).resolve())})
    return cfg.model_copy(update={"data": data.model_copy(update=update)}) if update else cfg
