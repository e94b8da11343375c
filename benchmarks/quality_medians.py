"""Medians over a study's banks of the quality figures RESULTS quotes (from RUN/quality.json).

    python benchmarks/quality_medians.py runs/bt30-pool

Per bank: precision / recall / FID against the real test images, FID against the cell's real training
images, within-class MS-SSIM of the synthetic and the real images, the real-vs-real yardstick, the
memorization share, the share of the bank a judge is >= 0.5 confident on, the judge's test accuracy
(TRTR) and TSTR where the stage ran it.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def rows(run: Path) -> list[dict[str, float | None]]:
    q = json.loads((run / "quality.json").read_text())
    out = []
    for b in q["banks"]:
        enc, cell = b["quality"]["encoder"], q["cells"][b["cell"]]
        yard = cell["real_train_vs_real_test"]["encoder"]["overall"]
        kept, everything = b["filtering"]["min_confidence"]["0.5"], b["filtering"]["all"]
        out.append({
            "precision_vs_test": enc["vs_test"]["overall"]["precision"],
            "recall_vs_test": enc["vs_test"]["overall"]["recall"],
            "fid_vs_test": enc["vs_test"]["overall"]["fid"],
            "fid_vs_train": enc["vs_train"]["overall"]["fid"],
            "ms_ssim_synthetic": enc["vs_train"]["overall"]["diversity_synthetic"],
            "ms_ssim_real": enc["vs_train"]["overall"]["diversity_real"],
            "yardstick_precision": yard["precision"],
            "yardstick_recall": yard["recall"],
            "memorization_flagged": b["memorization"]["flagged_share"],
            "confident_share_0.5": sum(kept.values()) / sum(everything.values()),
            "trtr_accuracy": cell["judge"]["test"]["accuracy"],
            "tstr_accuracy": b["tstr"]["test"]["accuracy"] if b.get("tstr") else None,
        })  # fmt: skip
    return out


def main(run: Path) -> None:
    table = rows(run)
    for key in table[0]:
        values = [r[key] for r in table if r[key] is not None]
        mid, low, high = statistics.median(values), min(values), max(values)
        print(f"{key:22s} median {mid:.3f}  min {low:.3f}  max {high:.3f}  n={len(values)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
