"""Two runs of the same cells, paired: did a training setting change the classifiers' metrics?

Pairs the rows of ``A/results.parquet`` and ``B/results.parquet`` on (model, policy, real fraction,
seed) — same data, splits and seeds, one setting different (e.g. ``train.cpu_bf16``) — and prints,
per (model, policy, fraction), the median of each metric in A and in B, the mean paired difference
B − A with its paired-bootstrap 95% CI and Wilcoxon p, the mean absolute difference (how far single
cells move), and the median ratio of training images/s
(B / A; only comparable when both runs had the machine to themselves). A or B may also be a CSV of
cells kept with ``benchmarks/export_cells.py`` (``docs/cells/``), for runs whose directory is gone.

    python benchmarks/compare_runs.py runs/bt10-pool runs/bt10-bf16 --metric test_macro_f1 --metric test_accuracy
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from study_stages import markdown  # benchmarks/study_stages.py, beside this script
from synthaug.metrics.stats import bootstrap_ci, wilcoxon_p

KEYS = ["model", "policy", "real_fraction", "seed"]


def cells(source: Path) -> pd.DataFrame:
    """A run's cells: ``RUN/results.parquet``, or a CSV written by ``export_cells.py``."""
    if source.suffix == ".csv":
        return pd.read_csv(source)
    results = source / "results.parquet"
    if not results.is_file():
        raise SystemExit(f"{results} not found: give a run directory whose classifier stage ran, or a cells CSV")
    return pd.read_parquet(results)


def paired(a: Path, b: Path) -> pd.DataFrame:
    """Rows present in both runs, joined on KEYS (columns suffixed _a / _b)."""
    left, right = cells(a), cells(b)
    both = left.merge(right, on=KEYS, suffixes=("_a", "_b"))
    if both.empty:
        raise SystemExit(f"no cell of {a} matches one of {b} on {KEYS}")
    return both


def table(both: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    out = []
    for (model, policy, fraction), g in both.groupby(KEYS[:3], sort=False):
        row: dict[str, object] = {"model": model, "policy": policy, "fraction": fraction, "pairs": len(g)}
        for m in metrics:
            d = (g[f"{m}_b"] - g[f"{m}_a"]).to_numpy()
            low, high = bootstrap_ci(d, statistic="mean")
            row[f"{m} A"] = f"{np.median(g[f'{m}_a']):.3f}"
            row[f"{m} B"] = f"{np.median(g[f'{m}_b']):.3f}"
            row[f"Δ {m} (B − A)"] = f"{d.mean():+.3f} [{low:+.3f}, {high:+.3f}] p={wilcoxon_p(d):.2g}"
            row[f"mean abs Δ {m}"] = f"{np.abs(d).mean():.3f}"
        speed = (g["train_images_per_s_b"] / g["train_images_per_s_a"]).median()
        row["train img/s B / A"] = f"{speed:.2f}"
        out.append(row)
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="reference run directory (or cells CSV)")
    parser.add_argument("b", type=Path, help="run directory (or cells CSV) with the one setting changed")
    parser.add_argument("--metric", action="append", help="results column (repeatable); default test_macro_f1")
    args = parser.parse_args()
    df = table(paired(args.a, args.b), args.metric or ["test_macro_f1"])
    print(markdown(df))


if __name__ == "__main__":
    main()
