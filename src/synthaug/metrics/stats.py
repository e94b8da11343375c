"""Statistics over repeated seeds, read from the results table.

Per cell: median, mean, std and a seeded percentile-bootstrap 95% CI. Against a baseline
policy: differences paired by seed, their bootstrap CI and a Wilcoxon signed-rank p-value.
Every metric knows which way is better (:func:`higher_is_better`): a loss such as cross-entropy
"wins" when it is lower, so wins read the same way for every metric.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

log = logging.getLogger(__name__)
Statistic = Callable[..., np.ndarray]
_STATISTICS: dict[str, Statistic] = {"median": np.median, "mean": np.mean}
_LOWER_IS_BETTER = ("cross_entropy", "loss", "error", "ece", "brier")
METRIC_PREFIXES = ("test_", "val_")


def higher_is_better(metric: str) -> bool:
    """False for losses and errors (cross-entropy, loss, error rate, calibration error, Brier score)."""
    return not any(word in metric for word in _LOWER_IS_BETTER)


def metric_columns(results: pd.DataFrame) -> list[str]:
    """Every recorded evaluation metric of a results table: numeric ``test_*`` and ``val_*`` columns."""
    return [
        c for c in results.columns
        if c.startswith(METRIC_PREFIXES) and pd.api.types.is_numeric_dtype(results[c])
    ]  # fmt: skip


def bootstrap_ci(
    values: np.ndarray, statistic: str = "median", n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over ``values`` (NaN for no values; the value itself for one)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    samples = x[rng.integers(0, len(x), size=(n_boot, len(x)))]  # (n_boot, n)
    stats = _STATISTICS[statistic](samples, axis=1)  # (n_boot,)
    alpha = (1 - level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return float(low), float(high)


def wilcoxon_p(diffs: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; 1.0 when every difference is zero, NaN with no pairs."""
    d = np.asarray(diffs, dtype=np.float64)
    d = d[~np.isnan(d)]
    if len(d) == 0:
        return float("nan")
    if np.all(d == 0):
        return 1.0
    try:
        return float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    except ValueError as exc:  # scipy refuses some degenerate inputs; report, do not crash the report
        log.warning("wilcoxon test failed on %d differences: %s", len(d), exc)
        return float("nan")


def summarize_cells(
    results: pd.DataFrame,
    metric: str,
    by: Sequence[str] = ("model", "policy", "real_fraction"),
    n_boot: int = 2000,
    seed: int = 0,
    statistic: str = "median",
) -> pd.DataFrame:
    """One row per cell (``by``): n, median, mean, std (ddof=1) and the bootstrap CI of ``statistic``."""
    _require(results, [*by, metric])
    rows = []
    for key, group in results.groupby(list(by), sort=True, dropna=False):
        v = group[metric].to_numpy(dtype=np.float64)
        low, high = bootstrap_ci(v, statistic, n_boot=n_boot, seed=seed)
        rows.append(
            {
                **dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)),
                "metric": metric,
                "n": int(np.sum(~np.isnan(v))),
                "median": float(np.nanmedian(v)) if len(v) else float("nan"),
                "mean": float(np.nanmean(v)),
                "std": float(np.nanstd(v, ddof=1)) if len(v) > 1 else float("nan"),
                "ci_low": low,
                "ci_high": high,
            }
        )
    return pd.DataFrame(rows)


def paired_comparison(
    results: pd.DataFrame,
    metric: str,
    baseline: str = "none",
    policy_col: str = "policy",
    by: Sequence[str] = ("model", "real_fraction"),
    pair_col: str = "seed",
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Each policy minus the baseline policy, paired over ``pair_col`` within each ``by`` group.

    Returns one row per (group, policy): n_pairs, mean_diff, median_diff, ci_low / ci_high
    (bootstrap CI of the mean difference, policy minus baseline), better ("higher" or "lower":
    which sign of the difference is an improvement), wins (pairs where the policy is better),
    wilcoxon_p.
    Seeds present for only one side are left out of the pairing.
    """
    _require(results, [*by, policy_col, pair_col, metric])
    rows = []
    sign = 1.0 if higher_is_better(metric) else -1.0
    for key, group in results.groupby(list(by), sort=True, dropna=False):
        base = group[group[policy_col] == baseline].set_index(pair_col)[metric]
        if base.empty:
            log.warning("no baseline %r rows for %s; skipped", baseline, key)
            continue
        for policy, other in group[group[policy_col] != baseline].groupby(policy_col, sort=True):
            paired = other.set_index(pair_col)[metric].to_frame("x").join(base.rename("b"), how="inner")
            d = (paired["x"] - paired["b"]).to_numpy(dtype=np.float64)  # (n_pairs,)
            low, high = bootstrap_ci(d, "mean", n_boot=n_boot, seed=seed)
            rows.append(
                {
                    **dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)),
                    policy_col: policy,
                    "baseline": baseline,
                    "metric": metric,
                    "n_pairs": len(d),
                    "mean_diff": float(d.mean()) if len(d) else float("nan"),
                    "median_diff": float(np.median(d)) if len(d) else float("nan"),
                    "ci_low": low,
                    "ci_high": high,
                    "better": "higher" if sign > 0 else "lower",
                    "wins": int((sign * d > 0).sum()),
                    "wilcoxon_p": wilcoxon_p(d),
                }
            )
    return pd.DataFrame(rows)


def _require(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"results table lacks column(s) {missing}; it has {list(df.columns)}")
