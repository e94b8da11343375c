"""Name registry of classifier networks: ``create_model(name, num_classes, image_size, **options)``.

Every network takes one-channel images (N, 1, H, W) in [-1, 1] and returns logits (N, num_classes).
Builders register with ``@register_model("name")``; the CLI offers ``available_models()``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from synthaug.config.classifier import CLASSIFIERS

Builder = Callable[..., nn.Module]
BuilderT = TypeVar("BuilderT", bound=Builder)
_MODELS: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[BuilderT], BuilderT]:
    """Decorator: register ``builder(num_classes, image_size, *, pretrained, **options) -> nn.Module``."""

    def deco(builder: BuilderT) -> BuilderT:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = builder
        CLASSIFIERS.setdefault(name, builder.__module__)  # configs may now name it
        return builder

    return deco


def available_models() -> list[str]:
    return sorted(CLASSIFIERS)


def create_model(name: str, num_classes: int, image_size: int, pretrained: bool = True, **options: Any) -> nn.Module:
    """Build the registered network ``name``.

    pretrained: load pretrained weights when the options ask for them (``False`` when a
    checkpoint is about to overwrite every weight anyway); ignored by models without any.
    """
    if name not in _MODELS and name in CLASSIFIERS:
        importlib.import_module(CLASSIFIERS[name])  # registers the built-in network
    if name not in _MODELS:
        raise ValueError(f"unknown classifier {name!r}; available: {available_models()}")
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
    try:
        return _MODELS[name](num_classes, image_size, pretrained=pretrained, **options)
    except TypeError as exc:
        raise ValueError(f"classifier {name!r}: {exc}") from exc
