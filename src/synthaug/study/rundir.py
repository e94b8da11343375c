"""The run directory: where every stage reads its inputs and writes its artifacts."""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

import synthaug
from synthaug.config import ConfigError, SynthaugConfig, dump_config
from synthaug.io import write_text


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def audit(self) -> Path:
        return self.root / "audit.json"

    @property
    def splits(self) -> Path:
        return self.root / "splits.json"

    @property
    def environment(self) -> Path:
        return self.root / "environment.yaml"

    def init(self, cfg: SynthaugConfig) -> None:
        """Create the folder and record the resolved config; refuse to mix two different studies."""
        self.root.mkdir(parents=True, exist_ok=True)
        text = dump_config(cfg)
        if self.config.exists() and self.config.read_text(encoding="utf-8") != text:
            raise ConfigError(
                f"run directory '{self.root}' holds a study with a different configuration ({self.config}); "
                "use a new --out folder, or the same config to resume"
            )
        write_text(self.config, text)
        write_text(self.environment, yaml.safe_dump(environment(), sort_keys=False))


def environment() -> dict[str, str]:
    """Versions that made the artifacts (the report prints them next to the results)."""
    import numpy
    import torch
    import torchvision

    return {
        "synthaug": synthaug.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": str(torch.__version__),
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda or "none",
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
    }
