"""Markdown tables of a run's statistics, in the form docs/RESULTS.md uses.

Reads ``RUN_DIR/statistics/summary.csv`` and ``paired.csv`` (written by the study's statistics
stage), so the numbers in the docs are exactly the run's and ``synthaug table RUN_DIR`` prints
them again.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from synthaug.report.markup import policy_name
from synthaug.rundir import RunDir

METRIC_NAMES = {
    "test_accuracy": "test accuracy",
    "test_balanced_accuracy": "balanced accuracy",
    "test_macro_f1": "macro-F1",
    "test_cross_entropy": "test cross-entropy (lower is better)",
    "val_cross_entropy": "validation cross-entropy (lower is better)",
}


def _signed(x: float) -> str:
    # U+2212 minus, as the docs write it; "+0.000" rather than "−0.000" for a rounded zero
    text = f"{x:+.3f}"
    return text.replace("-", "\u2212") if text.lstrip("-+") != "0.000" else "+0.000"


def _read(path: Path, what: str) -> pd.DataFrame:
    return pd.read_csv(_exists(path, what))


def _against(run: RunDir, policies: list[str], metric: str, known: set[str]) -> dict[str, pd.DataFrame]:
    """Paired differences of ``metric`` against each of ``policies`` (recorded or display names),
    from the run's per-cell results, indexed by (model, real_fraction, policy)."""
    from synthaug.metrics.stats import paired_comparison

    results = pd.read_parquet(_exists(run.results, "the per-cell results"))
    by_name = {policy_name(p): p for p in known} | {p: p for p in known}
    out = {}
    for name in policies:
        if name not in by_name:
            raise ValueError(
                f"--against {name!r}: no such policy in {run.results}; it has {sorted(map(policy_name, known))}"
            )
        raw = by_name[name]
        paired = paired_comparison(results, metric, baseline=raw)
        out[policy_name(raw)] = paired.set_index(["model", "real_fraction", "policy"])
    return out


def _exists(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: {what}; run `synthaug run` on this run directory first "
            "(its statistics stage writes it)"
        )
    return path


def markdown_table(
    run_root: Path,
    metrics: list[str] | None = None,
    paired_metric: str = "test_accuracy",
    against: list[str] | None = None,
) -> str:
    """One row per (model, real fraction, policy): median [95% CI] per metric, then the paired
    difference of ``paired_metric`` against the study's baseline, its wins and the Wilcoxon p;
    ``against``: one more column per named policy, the paired difference against it (mean [95% CI],
    Wilcoxon p, wins / pairs)."""
    run = RunDir(Path(run_root))
    metrics = metrics or ["test_accuracy", "test_macro_f1"]
    summary = _read(run.summary, "the per-cell summary")
    unknown = sorted(set(metrics) - set(summary["metric"]))
    if unknown:
        raise ValueError(f"metric(s) {unknown} not in {run.summary}; it has {sorted(set(summary['metric']))}")
    paired_path = run.paired
    paired = pd.read_csv(paired_path) if paired_path.exists() else None
    keys = ["model", "real_fraction", "policy"]
    first = summary[summary["metric"] == metrics[0]].sort_values(keys)
    baseline = None
    if paired is not None and len(paired) == 0:
        paired = None
    if paired is not None:
        if paired_metric not in set(paired["metric"]):
            raise ValueError(
                f"paired metric {paired_metric!r} not in {paired_path}; it has {sorted(set(paired['metric']))}"
            )
        baseline = str(paired["baseline"].iloc[0])
        paired = paired[paired["metric"] == paired_metric].set_index(keys)
    # the baseline row first within each (model, fraction), the rest as recorded
    first = first.assign(_base=first["policy"] != baseline).sort_values(["model", "real_fraction", "_base", "policy"])

    many_models = summary["model"].nunique() > 1
    many_fractions = summary["real_fraction"].nunique() > 1
    header = (["model"] if many_models else []) + (["real fraction"] if many_fractions else []) + ["policy", "seeds"]
    header += [f"{METRIC_NAMES.get(m, m)}, median [95% CI]" for m in metrics]
    if paired is not None:
        name = METRIC_NAMES.get(paired_metric, paired_metric).removeprefix("test ")
        header += [f"paired Δ {name} vs {baseline}, mean [95% CI]", "wins", "Wilcoxon p"]
    extra = _against(run, against, paired_metric, set(summary["policy"])) if against else {}
    name = METRIC_NAMES.get(paired_metric, paired_metric).removeprefix("test ")
    header += [f"Δ {name} vs {other}, mean [95% CI], p (wins)" for other in extra]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    indexed = summary.set_index([*keys, "metric"])
    for _, row in first.iterrows():
        key = (row["model"], row["real_fraction"], row["policy"])
        cells = ([str(row["model"])] if many_models else []) + ([f"{row['real_fraction']:g}"] if many_fractions else [])
        cells += [policy_name(str(row["policy"])), str(int(row["n"]))]
        for m in metrics:
            r = indexed.loc[(*key, m)]
            cells.append(f"{r['median']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]")
        if paired is not None:
            if key in paired.index:
                p = paired.loc[key]
                cells += [
                    f"{_signed(p['mean_diff'])} [{_signed(p['ci_low'])}, {_signed(p['ci_high'])}]",
                    f"{int(p['wins'])} / {int(p['n_pairs'])}",
                    "–" if pd.isna(p["wilcoxon_p"]) else f"{p['wilcoxon_p']:.2g}",
                ]
            else:
                cells += ["–", "–", "–"]
        for table in extra.values():
            if key not in table.index:
                cells.append("–")
                continue
            p = table.loc[key]
            pv = "–" if pd.isna(p["wilcoxon_p"]) else f"{p['wilcoxon_p']:.2g}"
            cells.append(f"{_signed(p['mean_diff'])} [{_signed(p['ci_low'])}, {_signed(p['ci_high'])}] "
                         f"p={pv} ({int(p['wins'])}/{int(p['n_pairs'])})")  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
