"""Every configuration model of synthaug, in one light package (pydantic and yaml only, no torch).

Sections: ``data`` (:mod:`.data`), ``study`` (:mod:`.study`, with its policies :mod:`.policies`
and generators :mod:`.generators`), ``train`` and the models (:mod:`.classifier`), ``quality``
(:mod:`.quality`). :func:`load_config` reads YAML, applies ``--set`` overrides and validates
everything once, so a bad policy or generator setting fails when the config loads.
"""

from synthaug.config.base import StrictModel
from synthaug.config.classifier import ClassifierConfig, ModelConfig, TrainConfig
from synthaug.config.data import DataConfig, LeakageConfig, PhantomConfig
from synthaug.config.generators import FAMILIES, GeneratorConfig, parse_generator
from synthaug.config.load import ConfigError, apply_override, dump_config, format_validation_error, load_config
from synthaug.config.policies import POLICIES, PolicySpec, parse_policy, policies_label, policy_params
from synthaug.config.quality import ExplainConfig, QualityConfig
from synthaug.config.study import BankConfig, StudyConfig, SynthaugConfig

__all__ = [
    "FAMILIES",
    "POLICIES",
    "BankConfig",
    "ClassifierConfig",
    "ConfigError",
    "DataConfig",
    "ExplainConfig",
    "GeneratorConfig",
    "LeakageConfig",
    "ModelConfig",
    "PhantomConfig",
    "PolicySpec",
    "QualityConfig",
    "StrictModel",
    "StudyConfig",
    "SynthaugConfig",
    "TrainConfig",
    "apply_override",
    "dump_config",
    "format_validation_error",
    "load_config",
    "parse_generator",
    "parse_policy",
    "policies_label",
    "policy_params",
]
