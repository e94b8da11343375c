"""One study's seeds run in slices, paired as one: the statistics of cells from several runs of one config.

A ten-seed study that does not fit one sitting can run as slices — the same config with
``--set 'study.seeds=[0,1,2,3]'``, later ``--set 'study.seeds=[4,5,6,7,8,9]'`` — each kept with
``benchmarks/export_cells.py``. A cell depends on its seed alone (its splits, generator, bank and
classifier are seeded by it) except in two places that use the study's *first* seed: the test split
where the data bring none (``data.test_fraction``), and the pool pretraining of
``study.generator_pool: unlabelled_rest``. With a dataset that has its own test split and the
labelled pool, the slices' cells are the cells of the whole study; otherwise slices with different
first seeds are different studies — grow one run directory by seeds instead (README, "Run
directory"). This script
joins them, refuses a cell that two slices both hold (a slice run twice, or overlapping seed lists)
and a slice whose arms or fractions differ from the others' (not one config), and prints, per model
and fraction, each arm's median and the paired difference against each ``--against`` arm (mean
[paired-bootstrap 95% CI], wins, Wilcoxon p) — the figures ``synthaug table`` prints for one run.
Where one slice grew a model the others did not run (a ResNet-18 grown into the first slice's run
directory), ``--model cnn`` pairs that model's cells alone; a named model some slice lacks is refused.

    python benchmarks/merge_cells.py docs/cells/bt30-labelled-s0-3.csv docs/cells/bt30-labelled-s4-9.csv \\
        --model cnn --metric test_macro_f1 --against none --against "classical 50%"

A source may also give one arm alone, ``SOURCE::ARM`` (the report's name or the recorded one; repeat
the source for several arms): an arm run in its own run directory later, paired with the arms of
another run of the same cells. Those sources are not held to the others' arms — that the cells are
the same is then the user's claim, which a cell run again in both places can check (a cell is
reproduced bit for bit on the same kind of CPU with the same threads, docs/RESULTS.md) — but every
arm of a model and fraction must cover the same seeds (``--seed`` keeps some seeds alone).

    python benchmarks/merge_cells.py docs/cells/bt30-labelled-s0-3.csv::none docs/cells/bt30-labelled-s4-9.csv::none \\
        "docs/cells/bt30-labelled-s0-3.csv::classical 50%" "docs/cells/bt30-labelled-s4-9.csv::classical 50%" \\
        docs/cells/bt30-pool-r18mix.csv --model resnet18 --against none --against "classical 50%" \\
        --seed 0 --seed 1 --seed 2 --seed 3 --seed 4 --seed 5
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from compare_runs import KEYS  # benchmarks/compare_runs.py, beside this script
from compare_runs import cells as run_cells
from study_stages import markdown
from synthaug.metrics.stats import paired_comparison
from synthaug.report.markup import policy_name


def split_source(source: Path | str) -> tuple[Path, str | None]:
    """``PATH`` or ``PATH::ARM``."""
    path, sep, arm = str(source).partition("::")
    if sep and not arm:
        raise SystemExit(f"{source}: name the arm after '::' (e.g. {path}::none)")
    return Path(path), arm if sep else None


def _arm_names(policies: pd.Series) -> dict[str, str]:
    """Each recorded policy under its report name and its recorded name."""
    known = set(policies)
    return {policy_name(p): p for p in known} | {p: p for p in known}


def _one_arm(frame: pd.DataFrame, arm: str, source: Path | str) -> pd.DataFrame:
    names = _arm_names(frame.policy)
    if arm not in names:
        raise SystemExit(f"{source}: no arm {arm!r} (it has {sorted(map(policy_name, set(frame.policy)))})")
    return frame[frame.policy == names[arm]]


def _check_same_seeds(cells: pd.DataFrame) -> None:
    for (model, fraction), g in cells.groupby(["model", "real_fraction"]):
        by_arm = {policy: sorted(set(a.seed)) for policy, a in g.groupby("policy")}
        first = next(iter(by_arm))
        for policy, own in by_arm.items():
            if own != by_arm[first]:
                raise SystemExit(
                    f"{model} at {fraction:g}: arm {policy_name(policy)!r} has seeds {own} but "
                    f"{policy_name(first)!r} has {by_arm[first]}: every arm needs the same seeds to pair"
                )


def merged(
    sources: list[Path] | list[Path | str], models: list[str] | None = None, seeds: list[int] | None = None
) -> pd.DataFrame:
    """The cells of every source (of ``models`` and ``seeds`` alone where given; of one arm for
    ``PATH::ARM``), one table; refuses a cell held twice, slices of different configs, and arms that
    cover different seeds."""
    split = [split_source(s) for s in sources]
    frames = [run_cells(path).assign(source=str(s)) for s, (path, _) in zip(sources, split, strict=True)]
    if seeds:
        frames = [f[f.seed.isin(seeds)] for f in frames]
    frames = [f if arm is None else _one_arm(f, arm, s) for s, f, (_, arm) in zip(sources, frames, split, strict=True)]
    if models:
        for source, frame in zip(sources, frames, strict=True):
            lacking = sorted(set(models) - set(frame.model))
            if lacking:
                raise SystemExit(
                    f"{source} has no cells of --model {', '.join(lacking)} (it has {sorted(set(frame.model))})"
                )
        frames = [f[f.model.isin(models)] for f in frames]
    whole = [(s, f) for s, f, (_, arm) in zip(sources, frames, split, strict=True) if arm is None]
    arms = [(s, sorted(set(zip(f.model, f.policy, f.real_fraction, strict=True)))) for s, f in whole]
    for source, own in arms[1:]:
        if own != arms[0][1]:
            raise SystemExit(
                f"{source} holds other arms or fractions than {arms[0][0]} ({own} vs {arms[0][1]}): "
                "slices of one study share its config except study.seeds"
            )
    both = pd.concat(frames, ignore_index=True)
    if len(whole) < len(frames):  # some sources gave one arm: their seeds are not held to a slice's
        _check_same_seeds(both)
    twice = both[both.duplicated(KEYS, keep=False)]
    if not twice.empty:
        first = twice.iloc[0]
        raise SystemExit(
            f"seed {first.seed} of {first.model} / {first.policy} is in more than one source "
            f"({', '.join(sorted(set(twice.source)))}): give each seed once"
        )
    return both


def table(cells: pd.DataFrame, metric: str, against: list[str]) -> pd.DataFrame:
    """Per (model, fraction, arm): seeds, median, and the paired difference against each baseline arm."""
    out = []
    for (model, fraction, policy), g in cells.groupby(["model", "real_fraction", "policy"], sort=True):
        out.append(
            {
                "model": model,
                "fraction": fraction,
                "policy": policy,
                "seeds": len(g),
                f"median {metric}": f"{np.median(g[metric]):.3f}",
            }
        )
    rows = pd.DataFrame(out).set_index(["model", "fraction", "policy"])
    known = set(cells.policy)
    by_name = _arm_names(cells.policy)  # display or recorded names
    for base in against:
        if base not in by_name:
            raise SystemExit(f"--against {base!r} is not an arm of these cells: {sorted(map(policy_name, known))}")
        pc = paired_comparison(cells, metric, baseline=by_name[base])
        column = f"Δ vs {policy_name(by_name[base])}"
        rows[column] = "–"
        for r in pc.itertuples():
            rows.loc[(r.model, r.real_fraction, r.policy), column] = (
                f"{r.mean_diff:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] {r.wins}/{r.n_pairs} p={r.wilcoxon_p:.2g}"
            )
    rows = rows.reset_index()
    rows["policy"] = rows.policy.map(policy_name)  # the names the report and `synthaug table` print
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sources", nargs="+", help="run directories or cells CSVs, one per seed slice; PATH::ARM for one arm of one"
    )
    parser.add_argument("--metric", default="test_macro_f1", help="results column; default test_macro_f1")
    parser.add_argument("--against", action="append", help="baseline arm (repeatable); default none")
    parser.add_argument("--model", action="append", help="pair this model's cells alone (repeatable); default all")
    parser.add_argument("--seed", type=int, action="append", help="pair this seed's cells alone (repeatable)")
    args = parser.parse_args()
    cells = merged(args.sources, args.model, args.seed)
    seeds = sorted(set(cells.seed))
    print(f"{len(cells)} cells from {len(args.sources)} source(s), seeds {seeds}\n")
    print(markdown(table(cells, args.metric, args.against or ["none"])))


if __name__ == "__main__":
    main()
