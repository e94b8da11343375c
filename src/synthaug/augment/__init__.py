"""Augmentation policies behind a name registry: classical, online, and synthetic (from generator banks)."""

from __future__ import annotations

from synthaug.augment.config import PolicySpec, as_specs, parse_policy, policies_json, policies_label, policy_slug
from synthaug.augment.policies import (
    BatchTransform,
    Geometric,
    Policy,
    PolicyContext,
    available_policies,
    build_policy,
    expand_training_set,
    online_transform,
    register_policy,
)
from synthaug.augment.synthetic import BankRequest, take_from_bank

__all__ = [
    "BankRequest",
    "BatchTransform",
    "Geometric",
    "Policy",
    "PolicyContext",
    "PolicySpec",
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
]
