"""Typed description of one augmentation policy: a registry name plus its parameters."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import Field

from synthaug.config_base import StrictModel

ParamValue = bool | int | float | str


class PolicySpec(StrictModel):
    """One policy of a cell, e.g. ``{name: classical, params: {p: 0.2}}``.

    A cell's policy is a list of specs: expansion policies (``classical``, ``synthetic``,
    ``balance``, ``variation``) add images before training; online policies (``basic``,
    ``autoaugment``, ...) transform every training batch. They combine in list order.
    """

    name: str = Field(..., description="registry key, see synthaug.augment.available_policies()")
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
