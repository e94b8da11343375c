"""YAML in, ``--set section.key=value`` overrides, validated once.

Errors name the key and what to do: an unknown key suggests the closest known one, a wrong
type names the key, the value and the expected type.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from synthaug.config.generators import FAMILIES
from synthaug.config.study import SynthaugConfig


class ConfigError(ValueError):
    """Configuration that cannot be used; the message names the key and the fix."""


def _plain_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop the tag pydantic adds inside a tagged union: ``generators.0.vae.vae.x`` -> ``generators.0.vae.x``."""
    out: list[Any] = []
    for i, part in enumerate(loc):
        if i and isinstance(loc[i - 1], int) and out[-2:-1] == ["generators"] and part in FAMILIES:
            continue
        out.append(part)
    return tuple(out)


def _suggest(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """'did you mean ...' for an unknown key at ``loc`` by walking the model tree."""
    if len(loc) > 3 and loc[:2] == ("study", "generators") and loc[3] in FAMILIES:  # inside one generator
        model, loc = FAMILIES[loc[3]], loc[4:]
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
        key = ".".join(str(p) for p in _plain_loc(tuple(err["loc"])))
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
