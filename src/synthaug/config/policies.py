"""Augmentation policies as configuration: a spec (registry name + parameters) and, per policy,
the typed parameters with their allowed ranges and a description in words.

Every policy string of a config is validated here when the config loads, without loading torch:
``classical:q=1`` (unknown parameter) or ``classical:p=-1`` (out of range) fail at once and name
the policy and its parameters. The policies' behaviour (what images they add, the online
transforms) lives in ``synthaug.augment``, whose classes extend the parameter classes below.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, model_validator

from synthaug.config.base import StrictModel

ParamValue = bool | int | float | str


class PolicySpec(StrictModel):
    """One policy of a cell, e.g. ``{name: classical, params: {p: 0.2}}``.

    A cell's policy is a list of specs: expansion policies (``classical``, ``synthetic``,
    ``balance``, ``variation``) add images before training; online policies (``basic``,
    ``autoaugment``, ...) transform every training batch. They combine in list order.
    """

    name: str = Field(..., description="registry key, see synthaug.config.policies.POLICIES")
    params: dict[str, ParamValue] = Field(default_factory=dict, description="policy parameters, e.g. {p: 0.2}")

    def label(self) -> str:
        """Short human-readable form: ``classical(p=0.2)`` or ``none``."""
        if not self.params:
            return self.name
        inner = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.name}({inner})"


def parse_policy(text: str) -> PolicySpec:
    """Parse the command-line form ``name`` or ``name:key=value,key=value`` (values parsed as JSON when possible)."""
    name, _, rest = text.strip().partition(":")
    params: dict[str, ParamValue] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, raw = item.partition("=")
        if not eq:
            raise ValueError(f"policy parameter {item!r} in {text!r} must look like key=value")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params[key.strip()] = value
    return PolicySpec(name=name, params=params)


def policies_label(specs: list[PolicySpec]) -> str:
    """Label of a combination of policies: ``classical(p=0.2)+basic``; the empty list is ``none``."""
    return "+".join(s.label() for s in specs) or "none"


def policies_json(specs: list[PolicySpec]) -> str:
    """Canonical JSON of a policy list (sorted keys): the results-table column and cell-id hash input."""
    return json.dumps([s.model_dump(mode="json") for s in specs], sort_keys=True, separators=(",", ":"))


def policy_slug(specs: list[PolicySpec]) -> str:
    """Folder-name-safe form of :func:`policies_label` (letters, digits, ``.``, ``-``, ``_``, ``+``, ``=``)."""
    parts = []
    for s in specs:
        params = "".join(f"-{k}={v}" for k, v in sorted(s.params.items()))
        parts.append(s.name + params)
    return re.sub(r"[^A-Za-z0-9.=_+-]", "_", "+".join(parts) or "none")


def as_specs(policies: list[PolicySpec] | list[str] | list[Any]) -> list[PolicySpec]:
    """Accept specs, dicts or command-line strings; return specs."""
    out: list[PolicySpec] = []
    for p in policies:
        if isinstance(p, PolicySpec):
            out.append(p)
        elif isinstance(p, str):
            out.append(parse_policy(p))
        else:
            out.append(PolicySpec.model_validate(p))
    return out


# ---------------------------------------------------------------- parameters of every policy

POLICIES: dict[str, type[PolicyParams]] = {}


class PolicyParams(StrictModel):
    """Parameters of one policy (none: no augmentation). Subclasses register with :func:`register_params`."""

    name: ClassVar[str] = "none"

    def describe(self) -> str:
        """What the policy does, in a few words (the report's table of approaches)."""
        return "no augmentation"


def register_params(cls: type[PolicyParams]) -> type[PolicyParams]:
    if cls.name in POLICIES:
        raise ValueError(f"policy {cls.name!r} is already registered")
    POLICIES[cls.name] = cls
    return cls


def available_policies() -> list[str]:
    return sorted(POLICIES)


def policy_params(spec: PolicySpec) -> PolicyParams:
    """The validated parameters of ``spec``; unknown names, unknown keys and bad values raise ``ValueError``."""
    if spec.name not in POLICIES:
        close = difflib.get_close_matches(spec.name, list(POLICIES), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown policy {spec.name!r}; available: {available_policies()}.{hint}")
    cls = POLICIES[spec.name]
    try:
        return cls.model_validate(spec.params)
    except ValidationError as exc:
        problems = "; ".join(_problem(e, spec.name) for e in exc.errors())
        allowed = ", ".join(
            f"{k} (required)" if f.is_required() else f"{k}={f.default!r}" for k, f in cls.model_fields.items()
        )
        raise ValueError(
            f"policy {spec.label()!r}: {problems}. Its parameters (defaults): {allowed or 'none'}"
        ) from None


def _problem(err: Any, policy: str) -> str:
    key = ".".join(map(str, err["loc"]))
    if err["type"] == "extra_forbidden":
        return f"unknown parameter {key!r}"
    if err["type"] == "missing":
        return f"missing parameter {key!r}"
    return f"{key or policy}: {err['msg']} (got {err.get('input')!r})"


register_params(PolicyParams)


Schedule = Literal["mix", "pretrain", "weighted"]
PRETRAIN_KEYS = ("pretrain_epochs", "pretrain_with_real", "finetune_lr")


class Scheduled(PolicyParams):
    """How the classifier uses the images a policy adds (``schedule``): ``mix`` trains on real + added
    together; ``pretrain`` trains on the added images (with the real ones when ``pretrain_with_real``)
    for ``pretrain_epochs``, then fine-tunes on the real images alone at ``finetune_lr`` (default: a
    tenth of ``train.lr``) with early stopping on the real validation split; ``weighted`` gives each
    added image the loss weight ``w`` (1 = mix)."""

    schedule: Schedule = Field("mix", description="mix, pretrain (then fine-tune on real) or weighted")
    w: float = Field(1.0, gt=0, le=1, description="loss weight of each added image (schedule=weighted)")
    pretrain_epochs: int = Field(10, ge=1, description="epochs on the added images first (schedule=pretrain)")
    pretrain_with_real: bool = Field(False, description="the real images join the first phase (schedule=pretrain)")
    finetune_lr: float | None = Field(None, gt=0, description="LR of the fine-tuning phase (default train.lr / 10)")

    @model_validator(mode="after")
    def _schedule_keys(self) -> Scheduled:
        given = self.model_fields_set
        if "w" in given and self.schedule != "weighted":
            raise ValueError("w (a loss weight) needs schedule=weighted")
        if stray := [k for k in PRETRAIN_KEYS if k in given and self.schedule != "pretrain"]:
            raise ValueError(f"{', '.join(stray)} need schedule=pretrain")
        return self

    def how_used(self) -> str:
        """The schedule in words (empty for mix)."""
        if self.schedule == "weighted":
            return f"; each with loss weight {self.w:g}"
        if self.schedule == "pretrain":
            lr = f"lr {self.finetune_lr:g}" if self.finetune_lr else "a tenth of the LR"
            first = "them and the real images" if self.pretrain_with_real else "them alone"
            return f"; pretrain on {first} for {self.pretrain_epochs} epochs, then fine-tune on the real images ({lr})"
        return ""


class Geometry(PolicyParams):
    """The classical transform's settings: flip probability, rotation range, smallest crop scale."""

    flip_p: float = Field(0.5, ge=0, le=1)
    degrees: float = Field(15.0, ge=0, le=180)
    min_scale: float = Field(0.8, gt=0, le=1)


@register_params
class Classical(Geometry, Scheduled):
    """Add round(p·N) flipped / rotated / cropped copies of randomly chosen real training images
    (``schedule=pretrain``: the copies train first — the control for synthetic pretraining)."""

    name: ClassVar[str] = "classical"
    p: float = Field(0.2, ge=0, description="share of the real subset added as transformed copies")

    def describe(self) -> str:
        return f"+{self.p:.0%} flipped / rotated / cropped copies of real images{self.how_used()}"


@register_params
class Basic(Geometry):
    """Flip / rotation / resized crop applied on the fly to every training image."""

    name: ClassVar[str] = "basic"

    def describe(self) -> str:
        return "online flip / rotation / resized crop"


@register_params
class AutoAugment(PolicyParams):
    """torchvision AutoAugment (learned ImageNet / CIFAR10 / SVHN policy)."""

    name: ClassVar[str] = "autoaugment"
    policy: Literal["imagenet", "cifar10", "svhn"] = "imagenet"

    def describe(self) -> str:
        return f"online AutoAugment ({self.policy} policy)"


@register_params
class RandAugment(PolicyParams):
    """torchvision RandAugment: ``num_ops`` random operations at ``magnitude`` (0..30)."""

    name: ClassVar[str] = "randaugment"
    num_ops: int = Field(2, ge=1)
    magnitude: int = Field(9, ge=0, le=30)

    def describe(self) -> str:
        return f"online RandAugment ({self.num_ops} operations, magnitude {self.magnitude})"


@register_params
class TrivialAugment(PolicyParams):
    """torchvision TrivialAugmentWide: one random operation at a random magnitude per image."""

    name: ClassVar[str] = "trivialaugment"

    def describe(self) -> str:
        return "online TrivialAugment (wide)"


class FromBank(Scheduled):
    """Images from a generator's bank of the cell: which generator, the quality filters, and how the
    classifier uses them (``schedule``, see :class:`Scheduled`)."""

    gen: str = Field(..., min_length=1, description="name of a study generator")
    min_confidence: float | None = Field(None, ge=0, le=1, description="keep images the judge assigns to their class")
    drop_memorized: bool = Field(False, description="drop images the memorization check flags")
    variation: ClassVar[bool] = False

    @property
    def filtered(self) -> bool:
        return self.min_confidence is not None or self.drop_memorized

    def amount(self) -> str:
        """How many images the policy adds, in words."""
        raise NotImplementedError

    def describe(self) -> str:
        filters = []
        if self.min_confidence is not None:
            filters.append(f"judge confidence ≥ {self.min_confidence:g}")
        if self.drop_memorized:
            filters.append("memorized images dropped")
        kept = f" ({', '.join(filters)})" if filters else ""
        return f"{self.amount()} from generator '{self.gen}'{kept}{self.how_used()}"


@register_params
class Synthetic(FromBank):
    """Add round(y·n_c) generated images of each class (fill: up to the full-data size; per_class: K each)."""

    name: ClassVar[str] = "synthetic"
    y: float = Field(1.0, ge=0)
    fill: bool = False
    per_class: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_amount(self) -> Synthetic:
        if self.per_class is not None and self.fill:
            raise ValueError("per_class cannot be combined with fill")
        return self

    def amount(self) -> str:
        if self.per_class is not None:
            return f"+{self.per_class} synthetic images per class"
        return "synthetic images up to the full training size" if self.fill else f"+{self.y:g}·N synthetic images"


@register_params
class Balance(FromBank):
    """Top every class up to the size of the largest class of the real subset."""

    name: ClassVar[str] = "balance"

    def amount(self) -> str:
        return "synthetic images topping every class up to the largest"


@register_params
class Variation(FromBank):
    """Add variations of the cell's own real images: round(y·n_c) per class, one per source while y ≤ 1."""

    name: ClassVar[str] = "variation"
    variation: ClassVar[bool] = True
    y: float = Field(1.0, ge=0)
    fill: bool = False

    def amount(self) -> str:
        what = "SDEdit variations of the cell's real images"
        return f"{what} up to the full training size" if self.fill else f"+{self.y:g}·N {what}"


def describe(specs: list[PolicySpec]) -> str:
    """A policy combination in words: ``+20% flipped / rotated / cropped copies …; online AutoAugment``."""
    return "; ".join(policy_params(s).describe() for s in specs) or PolicyParams().describe()
