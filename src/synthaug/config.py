"""Typed study configuration: YAML in, ``--set section.key=value`` overrides, validated once.

Errors name the key and what to do: an unknown key suggests the closest known one, a wrong
type names the key, the value and the expected type.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from synthaug.augment.config import PolicySpec, as_specs, policies_label
from synthaug.classifiers.config import ModelConfig, TrainConfig
from synthaug.config_base import StrictModel
from synthaug.generators.config import GeneratorConfig
from synthaug.study.quality import QualityConfig


class ConfigError(ValueError):
    """Configuration that cannot be used; the message names the key and the fix."""


class PhantomConfig(StrictModel):
    """The built-in phantom dataset (used when ``data.source`` is ``phantom``)."""

    n: int = Field(1200, ge=8, description="number of images (train + test)")
    seed: int = 0
    imbalance: dict[str, float] | None = Field(None, description="class -> relative weight, e.g. {pituitary: 0.1}")
    rare_class: bool = Field(False, description="add a fifth, 'metastasis' class")
    test_fraction: float = Field(0.2, gt=0, lt=1)


class LeakageConfig(StrictModel):
    """Which test images count as leaked copies of training images (see data/audit.py)."""

    remove_test_duplicates: bool = Field(True, description="drop test images that duplicate a training image")
    near_duplicates: bool = Field(True, description="also drop perceptual near-duplicates, not only exact copies")
    phash_max_distance: int = Field(8, ge=0, le=64)
    min_correlation: float = Field(0.99, gt=0, le=1)


class DataConfig(StrictModel):
    source: str = Field("phantom", description="'phantom', an image folder, a parquet file/folder, or hf:<id>")
    size: int = Field(64, ge=16, le=1024, description="side of the square one-channel images models see")
    class_names: list[str] | None = Field(None, description="names for integer labels (parquet without names)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="held-out share when the source has no test split")
    val_fraction: float = Field(0.15, gt=0, lt=1, description="validation share carved from training data")
    phantom: PhantomConfig = PhantomConfig()
    leakage: LeakageConfig = LeakageConfig()
    cache_dir: str | None = Field(None, description="preprocessed-data cache (default ~/.cache/synthaug)")
    workers: int | None = Field(None, ge=1, description="decoding processes (default: CPU count, at most 8)")


class StudyGeneratorConfig(GeneratorConfig):
    """A generator of the study: trained once per (real fraction, seed) on that cell's real subset."""

    name: str = Field("", description="what policies call it (gen=NAME); defaults to the family")

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, value: Any) -> Any:
        if isinstance(value, dict) and not value.get("name"):
            value = {**value, "name": value.get("family", "ddpm")}
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"generator name {value!r}: use letters, digits, '-' and '_' only")
        return value

    def generator_config(self) -> GeneratorConfig:
        """The plain generator config (what the checkpoint records)."""
        return GeneratorConfig.model_validate(self.model_dump(exclude={"name"}))


class BankConfig(StrictModel):
    """How synthetic banks are drawn (diffusion sampler settings default to each generator's)."""

    sampler: str | None = Field(None, description="ddpm, ddim or dpm++ (diffusion only; None: the generator's)")
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
    generators: list[StudyGeneratorConfig] = Field(
        default_factory=list, description="generators that synthetic / balance / variation policies name"
    )
    bank: BankConfig = BankConfig()
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:N")
    workers: int | None = Field(None, ge=1, description="parallel grid cells (default: what cores and memory allow)")
    memory_per_worker_gb: float = Field(2.0, gt=0, description="memory one grid cell may use, for the default")

    @field_validator("policies", mode="before")
    @classmethod
    def _parse_policies(cls, value: Any) -> Any:
        from synthaug.augment import available_policies

        if not isinstance(value, list):
            return value
        parsed = [as_specs(combo if isinstance(combo, list) else [combo]) for combo in value]
        known = available_policies()
        for spec in (s for combo in parsed for s in combo):
            if spec.name not in known:
                close = difflib.get_close_matches(spec.name, known, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise ValueError(f"unknown policy {spec.name!r}; available: {known}.{hint}")
        return parsed

    @field_validator("real_fractions")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        bad = [f for f in value if not 0 < f <= 1]
        if bad:
            raise ValueError(f"real fractions must lie in (0, 1], got {bad}")
        return value

    @model_validator(mode="after")
    def _check_generators(self) -> StudyConfig:
        names = [g.name for g in self.generators]
        if len(set(names)) != len(names):
            raise ValueError(f"study.generators: names must be unique, got {names}; set name: for each")
        by_name = {g.name: g for g in self.generators}
        for spec in (s for combo in self.policies for s in combo):
            gen = spec.params.get("gen")
            if spec.name in ("synthetic", "balance", "variation"):
                if gen is None:
                    raise ValueError(f"policy {spec.label()!r} needs gen=NAME, one of study.generators {names}")
                if str(gen) not in by_name:
                    close = difflib.get_close_matches(str(gen), names, n=1)
                    hint = f" Did you mean '{close[0]}'?" if close else ""
                    raise ValueError(
                        f"policy {spec.label()!r} names generator {gen!r}, which study.generators does not define "
                        f"(defined: {names}).{hint}"
                    )
                if spec.name == "variation" and by_name[str(gen)].family != "ddpm":
                    raise ValueError(f"policy {spec.label()!r}: variations need a diffusion generator (family ddpm)")
        return self

    def policy_labels(self) -> list[str]:
        return [policies_label([s for s in combo if s.name != "none"]) for combo in self.policies]


class SynthaugConfig(StrictModel):
    data: DataConfig = DataConfig()
    study: StudyConfig = StudyConfig()
    train: TrainConfig = TrainConfig()
    quality: QualityConfig = QualityConfig()

    @model_validator(mode="after")
    def _filters_need_quality(self) -> SynthaugConfig:
        # min_confidence / drop_memorized read the scores the quality stage writes.
        for spec in (s for combo in self.study.policies for s in combo):
            filtered = spec.params.get("min_confidence") is not None or spec.params.get("drop_memorized")
            if filtered and not self.quality.enabled:
                raise ValueError(
                    f"policy {spec.label()!r} filters synthetic images by the quality stage's scores, but "
                    "quality.enabled is false; enable it or drop min_confidence / drop_memorized"
                )
        return self


def _suggest(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """'did you mean ...' for an unknown key at ``loc`` by walking the model tree."""
    cls: Any = model
    for part in loc[:-1]:
        field = cls.model_fields.get(part) if isinstance(part, str) else None
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return ""
        cls = ann
    close = difflib.get_close_matches(str(loc[-1]), list(cls.model_fields), n=1)
    known = ", ".join(cls.model_fields)
    return f" Did you mean '{close[0]}'?" if close else f" Known keys here: {known}."


def format_validation_error(exc: ValidationError, model: type[BaseModel], origin: str) -> str:
    lines = [f"invalid configuration ({origin}):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"  unknown key '{key}'.{_suggest(model, tuple(err['loc']))}")
        else:
            lines.append(f"  {key}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` to a nested dict; the value is parsed as YAML (numbers, lists, bools)."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value (e.g. data.size=128), got {assignment!r}")
    key, text = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set has an empty key in {assignment!r}")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: '{part}' holds a value, not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse value {text!r}: {exc}") from exc


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> SynthaugConfig:
    """Read a YAML config (or defaults when ``path`` is None), apply overrides, validate."""
    raw: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file '{p}' does not exist; see configs/ for examples")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file '{p}' is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"config file '{p}' must hold a mapping of sections (data:, study:, ...)")
        origin = str(p)
    for assignment in overrides or []:
        apply_override(raw, assignment)
    if overrides:
        origin += " with --set " + " ".join(overrides)
    try:
        return SynthaugConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, SynthaugConfig, origin)) from exc


def dump_config(cfg: BaseModel) -> str:
    """The resolved configuration as YAML (what the run directory records)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
