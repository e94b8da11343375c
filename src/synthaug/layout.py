"""Where a study keeps generators and synthetic banks inside its run directory.

One place for the paths the generator, bank, quality and classifier stages share:

    RUN_DIR/generators/<name>/f<fraction>_s<seed>/generator.pt   trained on that cell's real subset
    RUN_DIR/banks/<bank>/f<fraction>_s<seed>/manifest.parquet    its samples (<bank> = <name>)
    RUN_DIR/banks/<name>-variation/f<fraction>_s<seed>/...       variations of that subset's images
    RUN_DIR/banks/<bank>/f<fraction>_s<seed>/scores.parquet      judge confidence and memorization flags
"""

from __future__ import annotations

import re
from pathlib import Path

SCORES = "scores.parquet"
VARIATION_SUFFIX = "-variation"
_CELL = re.compile(r"^f(?P<fraction>[0-9.e-]+)_s(?P<seed>-?\d+)$")


def cell_key(fraction: float, seed: int) -> str:
    return f"f{fraction:g}_s{seed}"


def parse_cell_key(key: str) -> tuple[float, int]:
    m = _CELL.match(key)
    if m is None:
        raise ValueError(f"'{key}' is not a cell folder name like f0.5_s0")
    return float(m["fraction"]), int(m["seed"])


def generator_dir(run_dir: str | Path, name: str, fraction: float, seed: int) -> Path:
    return Path(run_dir) / "generators" / name / cell_key(fraction, seed)


def bank_name(generator: str, variation: bool = False) -> str:
    return generator + VARIATION_SUFFIX if variation else generator


def bank_dir(run_dir: str | Path, bank: str, fraction: float, seed: int) -> Path:
    return Path(run_dir) / "banks" / bank / cell_key(fraction, seed)
