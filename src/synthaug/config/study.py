"""The study: the grid of models × policies × real fractions × seeds, its generators and banks,
and the whole configuration (:class:`SynthaugConfig`) with its cross-section checks."""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from synthaug.config.base import StrictModel
from synthaug.config.classifier import ModelConfig, TrainConfig
from synthaug.config.data import DataConfig
from synthaug.config.execution import ExecutionConfig, ExecutorName, RayConfig, SlurmConfig
from synthaug.config.generators import FAMILIES, AnyGeneratorConfig, GeneratorConfig, SamplerName, with_family
from synthaug.config.policies import FromBank, PolicySpec, as_specs, policies_label, policy_params
from synthaug.config.quality import QualityConfig
from synthaug.config.report import ReportConfig


def _unique(values: list[Any], key: str) -> list[Any]:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{key} lists {repeated} more than once; each would train the same cells twice")
    return values


class BankConfig(StrictModel):
    """How synthetic banks are drawn (diffusion sampler settings default to each generator's)."""

    sampler: SamplerName | None = Field(None, description="diffusion sampler (None: the generator's)")
    steps: int | None = Field(None, ge=1, description="sampler steps (None: the generator's)")
    guidance: float | None = Field(None, ge=0, description="classifier-free guidance scale (None: the generator's)")
    batch_size: int = Field(64, ge=1)
    variation_strength: float = Field(0.5, gt=0, le=1, description="noise level of image variations (SDEdit)")
    filter_reserve: float = Field(
        1.0, ge=0, description="extra share of images drawn for policies that filter, so enough survive"
    )


def _no_policy() -> list[list[PolicySpec]]:
    return [[]]


class StudyConfig(StrictModel):
    """The grid: every model × policy × real fraction × seed is one classifier run."""

    name: str = "study"
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    real_fractions: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
    models: list[ModelConfig] = Field(default_factory=lambda: [ModelConfig()], min_length=1)
    policies: list[list[PolicySpec]] = Field(
        default_factory=_no_policy,
        min_length=1,
        description="each entry is one policy combination, e.g. [] (none), ['classical:p=0.2'], [autoaugment]",
    )
    baseline: str = Field("none", description="policy label the paired comparisons are made against")
    generators: list[AnyGeneratorConfig] = Field(
        default_factory=list, description="generators that synthetic / balance / variation policies name"
    )
    generator_pool: Literal["labelled", "unlabelled_rest"] = Field(
        "labelled",
        description="labelled: generators see the cell's labelled subset only; unlabelled_rest: also the rest "
        "of the training split without labels (never validation or test), where the family can use it",
    )
    bank: BankConfig = BankConfig()
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:N")
    workers: int | None = Field(None, ge=1, description="parallel tasks (default: what cores and memory allow)")
    memory_per_worker_gb: float = Field(2.0, gt=0, description="memory one task may use, for the default")
    executor: ExecutorName = Field(
        "local", description="where tasks run: local (process pool), ray (synthaug[ray]), slurm (synthaug[slurm])"
    )
    resources: ExecutionConfig = Field(
        ExecutionConfig(), description="per task kind: cpus, gpus, memory, time (ray and slurm executors)"
    )
    ray: RayConfig = RayConfig()
    slurm: SlurmConfig = SlurmConfig()

    @field_validator("policies", mode="before")
    @classmethod
    def _parse_policies(cls, value: Any) -> Any:
        """Every policy is built here, at load time: unknown names, parameters and values are errors now."""
        if not isinstance(value, list):
            return value
        parsed = [as_specs(combo if isinstance(combo, list) else [combo]) for combo in value]
        for spec in (s for combo in parsed for s in combo):
            policy_params(spec)
        return parsed

    @field_validator("generators", mode="before")
    @classmethod
    def _parse_generators(cls, value: Any) -> Any:
        """Entries without ``family`` are DDPMs; an unknown family is named with the registered ones."""
        return [with_family(g) for g in value] if isinstance(value, list) else value

    @field_validator("real_fractions")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        bad = [f for f in value if not 0 < f <= 1]
        if bad:
            raise ValueError(f"real fractions must lie in (0, 1], got {bad}")
        return _unique(value, "real_fractions")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        bad = [s for s in value if s < 0]
        if bad:
            raise ValueError(f"seeds must be non-negative integers, got {bad}")
        return _unique(value, "seeds")

    @model_validator(mode="after")
    def _check_generators(self) -> StudyConfig:
        names = [g.name for g in self.generators]
        if len(set(names)) != len(names):
            raise ValueError(f"study.generators: names must be unique, got {names}; set name: for each")
        by_name: dict[str, GeneratorConfig] = {g.name: g for g in self.generators}
        pooled = [g.name for g in self.generators if g.pool_steps]
        if pooled and self.generator_pool != "unlabelled_rest":
            raise ValueError(
                f"study.generators {pooled} set pool_steps, which pretrains on the unlabelled pool: "
                "set study.generator_pool: unlabelled_rest (or pool_steps: 0)"
            )
        for spec in (s for combo in self.policies for s in combo):
            params = policy_params(spec)
            if not isinstance(params, FromBank):
                continue
            if params.gen not in by_name:
                close = difflib.get_close_matches(params.gen, names, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise ValueError(
                    f"policy {spec.label()!r} names generator {params.gen!r}, which study.generators does not "
                    f"define (defined: {names}).{hint}"
                )
            if params.variation and not by_name[params.gen].variations:
                able = [f for f, c in FAMILIES.items() if c.variations]
                raise ValueError(f"policy {spec.label()!r}: variations need a family that makes them ({able})")
            if not params.variation and not by_name[params.gen].draws():
                raise ValueError(
                    f"policy {spec.label()!r}: generator {params.gen!r} only makes variations of real images; "
                    "use it in a variation policy (or a text2img pipeline for synthetic / balance)"
                )
        return self

    def all_specs(self) -> list[PolicySpec]:
        """Every policy spec of every combination, in order."""
        return [spec for combo in self.policies for spec in combo]

    def policy_labels(self) -> list[str]:
        return [policies_label([s for s in combo if s.name != "none"]) for combo in self.policies]


class SynthaugConfig(StrictModel):
    data: DataConfig = DataConfig()
    study: StudyConfig = StudyConfig()
    train: TrainConfig = TrainConfig()
    quality: QualityConfig = QualityConfig()
    report: ReportConfig = ReportConfig()

    @model_validator(mode="after")
    def _filters_need_quality(self) -> SynthaugConfig:
        # min_confidence / drop_memorized read the scores the quality stage writes.
        for spec in (s for combo in self.study.policies for s in combo):
            params = policy_params(spec)
            if isinstance(params, FromBank) and params.filtered and not self.quality.enabled:
                raise ValueError(
                    f"policy {spec.label()!r} filters synthetic images by the quality stage's scores, but "
                    "quality.enabled is false; enable it or drop min_confidence / drop_memorized"
                )
        return self
