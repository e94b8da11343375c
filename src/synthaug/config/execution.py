"""Where a study's tasks run: this machine's process pool, a Ray cluster, or SLURM through submitit.

These are execution settings: they may change between attempts of a resumed study (the
results do not depend on them, as long as each task gets the same number of threads).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from synthaug.config.base import StrictModel

ExecutorName = Literal["local", "ray", "slurm"]
TaskKind = Literal["generator", "bank", "quality", "classifier", "explain"]
TASK_KINDS: tuple[TaskKind, ...] = ("generator", "bank", "quality", "classifier", "explain")

# The package each backend needs and the extra that installs it.
BACKEND_PACKAGES: dict[str, tuple[str, str]] = {"ray": ("ray", "ray"), "slurm": ("submitit", "slurm")}


class TaskResources(StrictModel):
    """What one task of a kind asks the cluster for (Ray resources, SLURM job parameters)."""

    cpus: float = Field(1.0, gt=0, description="CPU cores; the task runs with this many torch threads (at least 1)")
    gpus: float = Field(0.0, ge=0, description="GPUs; Ray accepts fractions (0.25: four tasks share one GPU)")
    mem_gb: float | None = Field(None, gt=0, description="memory (Ray: a scheduling resource; SLURM: --mem)")
    time_min: int = Field(240, ge=1, description="SLURM time limit of one task, minutes")

    def threads(self) -> int:
        return max(1, int(self.cpus))


class RayConfig(StrictModel):
    """``study.executor: ray``."""

    address: str = Field(
        "",
        description="'' starts a Ray instance on this machine for the study; 'auto' joins the cluster this "
        "machine belongs to; 'host:6379' or 'ray://host:10001' joins that cluster",
    )
    local_cpus: int | None = Field(None, ge=1, description="CPUs of a Ray started here (default: all cores)")
    max_retries: int = Field(
        2, ge=0, description="times a task is retried when its worker process or node dies (not on a Python error)"
    )


class SlurmConfig(StrictModel):
    """``study.executor: slurm`` (through submitit): one job array per stage."""

    cluster: Literal["auto", "slurm", "local"] = Field(
        "auto",
        description="auto: SLURM when sbatch is on PATH; local: submitit's local executor (no SLURM; for tests)",
    )
    partition: str | None = None
    array_parallelism: int = Field(64, ge=1, description="at most this many tasks of an array run at once")
    sbatch: dict[str, str | int] = Field(
        default_factory=dict, description="extra #SBATCH flags, e.g. {account: mylab, qos: normal, constraint: a100}"
    )
    max_requeues: int = Field(3, ge=0, description="times a pre-empted or timed-out task is requeued")


class ExecutionConfig(StrictModel):
    """Per-kind task resources; a kind not listed gets ``default``."""

    default: TaskResources = TaskResources()
    generator: TaskResources | None = None
    bank: TaskResources | None = None
    quality: TaskResources | None = None
    classifier: TaskResources | None = None
    explain: TaskResources | None = None

    def for_kind(self, kind: TaskKind) -> TaskResources:
        own = getattr(self, kind)
        return own if own is not None else self.default
