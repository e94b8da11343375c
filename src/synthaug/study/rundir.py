"""The run directory: where every stage reads its inputs and writes its artifacts."""

from __future__ import annotations

import datetime as dt
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

import synthaug
from synthaug.config import ConfigError, SynthaugConfig, dump_config
from synthaug.io import read_json, write_json, write_text


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

    @property
    def timings(self) -> Path:
        return self.root / "timings.json"

    def record_time(self, stage: str, seconds: float) -> None:
        """Add a finished stage's wall time to ``timings.json`` (summed over the attempts of a resumed run)."""
        times = read_json(self.timings) if self.timings.exists() else {}
        entry = times.get(stage, {"seconds": 0.0, "runs": 0})
        times[stage] = {
            "seconds": round(entry["seconds"] + seconds, 3),
            "runs": entry["runs"] + 1,
            "finished": dt.datetime.now().isoformat(timespec="seconds"),
        }
        write_json(self.timings, times)

    def init(self, cfg: SynthaugConfig) -> None:
        """Create the folder and record the resolved config; refuse to mix two different studies."""
        self.root.mkdir(parents=True, exist_ok=True)
        text = dump_config(cfg)
        if self.config.exists() and _results_part(self.config.read_text(encoding="utf-8")) != _results_part(text):
            raise ConfigError(
                f"run directory '{self.root}' holds a study with a different configuration ({self.config}); "
                "use a new --out folder, or the same config to resume"
            )
        write_text(self.config, text)
        write_text(self.environment, yaml.safe_dump(environment(), sort_keys=False))


# Settings that change how fast a study runs, not what it computes: a resumed run may change them.
EXECUTION_KEYS = (("study", "workers"), ("train", "threads"), ("data", "workers"))


def _results_part(text: str) -> dict:
    """The recorded config without its execution settings (what must match to resume)."""
    raw = yaml.safe_load(text) or {}
    for section, key in EXECUTION_KEYS:
        if isinstance(raw.get(section), dict):
            raw[section].pop(key, None)
    return raw


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
