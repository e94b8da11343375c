"""Classifiers: networks behind a name registry, a plain training loop, evaluation, one grid cell."""

from __future__ import annotations

from synthaug.classifiers import cnn, resnet, vit  # noqa: F401  (registers the built-in networks)
from synthaug.classifiers.registry import available_models, create_model, register_model
from synthaug.config.classifier import ClassifierConfig, ModelConfig, TrainConfig

__all__ = ["ClassifierConfig", "ModelConfig", "TrainConfig", "available_models", "create_model", "register_model"]
