"""The cluster engines of the executors: Ray tasks and SLURM job arrays through submitit, with
their connection, the shared-filesystem probe and the optional-dependency check.

They run the same :class:`~synthaug.study.executors.Task` through the same
:func:`~synthaug.study.executors.execute` as the local engines; see docs/CLUSTER.md.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import math
import os
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthaug.config import ConfigError
from synthaug.config.execution import BACKEND_PACKAGES, TaskKind
from synthaug.study.executors import Outcome, Task, _error_line, _failure, _node_id, execute, study_executor

if TYPE_CHECKING:
    from synthaug.config import SynthaugConfig
    from synthaug.config.study import StudyConfig
    from synthaug.rundir import RunDir

log = logging.getLogger(__name__)


def require_backend(executor: str) -> Any:
    """Import the package ``study.executor`` needs, or say which extra installs it."""
    package, extra = BACKEND_PACKAGES[executor]
    if importlib.util.find_spec(package) is None:
        raise ConfigError(
            f"study.executor={executor} needs the '{package}' package, which is not installed: "
            f"pip install 'synthaug[{extra}]' (or set study.executor=local)"
        )
    return importlib.import_module(package)


def require_generator_extras(cfg: SynthaugConfig) -> None:
    """Generator families that need an extra (pretrained pipelines: transformers and peft) say so at once."""
    for g in cfg.study.generators:
        if g.family != "pretrained":
            continue
        missing = [m for m in ("transformers", "peft") if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(
                f"generator '{g.name}' (family pretrained) needs {' and '.join(missing)}, not installed: "
                "pip install 'synthaug[hf]'"
            )


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
