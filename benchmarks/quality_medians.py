"""Medians over a study's banks of the quality figures RESULTS quotes (from RUN/quality.json).

    python benchmarks/quality_medians.py runs/bt30-pool

The per-bank figures of ``family_table.rows`` (FID / precision / recall against the real test images,
FID against the cell's real training images, MS-SSIM, memorization, TRTR, TSTR where the stage ran it),
plus the real-vs-real precision / recall yardstick and the share of the bank a judge is >= 0.5
confident on.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from family_table import rows as bank_rows  # the script's own folder is on sys.path


def rows(run: Path) -> list[dict[str, float]]:
    q = json.loads((run / "quality.json").read_text())
    out = []
    for b, row in zip(q["banks"], bank_rows(run, threads=1), strict=True):
        yard = q["cells"][b["cell"]]["real_train_vs_real_test"]["encoder"]["overall"]
        kept, everything = b["filtering"]["min_confidence"]["0.5"], b["filtering"]["all"]
        numbers = {k: v for k, v in row.items() if isinstance(v, float)}
        out.append(numbers | {
            "yardstick_precision": yard["precision"], "yardstick_recall": yard["recall"],
            "confident_share_0.5": sum(kept.values()) / sum(everything.values()),
        })  # fmt: skip
    return out


def main(run: Path) -> None:
    table = rows(run)
    for key in dict.fromkeys(k for r in table for k in r):
        values = [r[key] for r in table if key in r]
        mid, low, high = statistics.median(values), min(values), max(values)
        print(f"{key:22s} median {mid:.3f}  min {low:.3f}  max {high:.3f}  n={len(values)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
