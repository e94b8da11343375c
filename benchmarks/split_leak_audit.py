"""How many validation images duplicate a training image, with image-wise vs grouped splits.

    python benchmarks/split_leak_audit.py [--data ../shared/data/brain-tumor-mri] [--fractions 1.0 0.1]

Image-wise splits are the grouped ones with every image its own unit (what synthaug did before
the units of splitting); grouped splits keep near-duplicate groups (and data.groups) whole.
For each (fraction, seed) cell: the share of validation and test images whose nearest training
image of the cell has a 32×32 block-mean correlation of at least 0.99.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from synthaug.config import load_config
from synthaug.data.cells import Cell
from synthaug.data.prepare import prepare_data
from synthaug.data.split_audit import split_audit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).parents[1] / ".." / "shared" / "data" / "brain-tumor-mri"))
    ap.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.1])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    if not Path(args.data).exists():
        sys.exit(f"skipped: {args.data} not found")
    cfg = load_config(None, [f"data.source={args.data}", "data.size=64"])
    data = prepare_data(cfg.data)
    units = len(set(data.train.groups.tolist())) if data.train.groups is not None else len(data.train)
    print(f"{len(data.train)} training images in {units} units ({data.audit['split_unit']})")
    image_wise = dataclasses.replace(data.train, groups=None)
    print("| fraction | seed | split | validation images | val near copies | test near copies | leak |")
    print("|---|---|---|---|---|---|---|")
    for fraction in args.fractions:
        for seed in args.seeds:
            for name, pool in (("image-wise", image_wise), ("grouped", data.train)):
                cell = Cell.of(pool, fraction, seed, cfg.data.val_fraction)
                a = split_audit(cell.fit(pool), cell.val(pool), data.test, cfg.data.leakage.min_correlation)
                print(f"| {fraction:g} | {seed} | {name} | {len(cell.val_idx)} | {a['val_near_copies']:.1%} "
                      f"| {a['test_near_copies']:.1%} | {a['leak']} |")  # fmt: skip


if __name__ == "__main__":
    main()
