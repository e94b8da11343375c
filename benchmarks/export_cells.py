"""Keep a run's per-cell results beside the docs, so later runs can be paired with it seed by seed.

Writes ``RUN/results.parquet`` (one row per classifier cell: model, policy, real fraction, seed, test and
validation metrics, epochs, training speed) as a CSV, sorted by cell. Run directories are large and
stay out of the repository; the CSV is a few kB, and ``benchmarks/compare_runs.py`` accepts it in place
of a run directory:

    python benchmarks/export_cells.py runs/bt10-labelled-r18 docs/cells/bt10-labelled-r18.csv
    python benchmarks/compare_runs.py docs/cells/bt10-labelled-r18.csv runs/NEW --metric test_macro_f1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from compare_runs import KEYS  # benchmarks/compare_runs.py, beside this script
from compare_runs import cells as run_cells


def export(run: Path, out: Path) -> pd.DataFrame:
    """Write RUN's cells to OUT (CSV, sorted by model / policy / fraction / seed) and return them."""
    cells = run_cells(run).sort_values(KEYS)
    out.parent.mkdir(parents=True, exist_ok=True)
    cells.to_csv(out, index=False)  # full float precision: re-read cells equal the parquet ones
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory with results.parquet")
    parser.add_argument("out", type=Path, help="CSV to write, e.g. docs/cells/NAME.csv")
    args = parser.parse_args()
    cells = export(args.run, args.out)
    print(f"{len(cells)} cells -> {args.out}")


if __name__ == "__main__":
    main()
