"""Base class for every typed configuration section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Frozen, typed, and strict about unknown keys (typos become errors, not silent defaults)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
