"""Augmentation: classical and online policies behind a name registry; synthetic policies register here too."""

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

__all__ = [
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
]
