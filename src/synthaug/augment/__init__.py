"""Augmentation policies behind a name registry: classical, online, and synthetic (from generator banks).

A policy's parameters are declared (and validated at config load) in ``synthaug.config.policies``;
its behaviour lives here.
"""

from __future__ import annotations

from synthaug.augment.policies import (
    BatchTransform,
    Geometric,
    Policy,
    build_policy,
    online_transform,
    register_policy,
)
from synthaug.augment.schedule import Schedule, expand_training_set, training_plan
from synthaug.augment.synthetic import BankPolicy, BankRequest, take_from_bank
from synthaug.config.policies import (
    PolicySpec,
    as_specs,
    available_policies,
    parse_policy,
    policies_json,
    policies_label,
    policy_slug,
)

__all__ = [
    "BankPolicy",
    "BankRequest",
    "BatchTransform",
    "Geometric",
    "Policy",
    "PolicySpec",
    "Schedule",
    "as_specs",
    "available_policies",
    "build_policy",
    "expand_training_set",
    "online_transform",
    "parse_policy",
    "policies_json",
    "policies_label",
    "policy_slug",
    "register_policy",
    "take_from_bank",
    "training_plan",
]
