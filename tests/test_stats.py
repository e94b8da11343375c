"""Statistics over seeds: cell summaries and paired comparisons on a hand-made results table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from synthaug.metrics.stats import bootstrap_ci, paired_comparison, summarize_cells, wilcoxon_p

BASE = [0.70, 0.72, 0.74, 0.76, 0.78]
GAIN = [0.01, 0.02, 0.03, 0.04, 0.05]


def results_table() -> pd.DataFrame:
    rows = []
    for seed in range(5):
        for policy, value in (("none", BASE[seed]), ("classical", BASE[seed] + GAIN[seed]), ("same", BASE[seed])):
            rows.append({"model": "cnn", "policy": policy, "real_fraction": 1.0, "seed": seed, "test_accuracy": value})
    rows.append({"model": "cnn", "policy": "lonely", "real_fraction": 1.0, "seed": 0, "test_accuracy": 0.9})
    return pd.DataFrame(rows)


def test_summary_known_answer() -> None:
    s = summarize_cells(results_table(), "test_accuracy").set_index("policy")
    none = s.loc["none"]
    assert none["n"] == 5
    assert none["median"] == pytest.approx(0.74)
    assert none["mean"] == pytest.approx(0.74)
    assert none["std"] == pytest.approx(math.sqrt(0.001))  # ddof=1: (0.04² + 0.02²) * 2 / 4
    assert 0.70 <= none["ci_low"] <= 0.74 <= none["ci_high"] <= 0.78
    assert math.isnan(s.loc["lonely", "std"]) and s.loc["lonely", "ci_low"] == s.loc["lonely", "ci_high"] == 0.9


def test_summary_is_seeded() -> None:
    a = summarize_cells(results_table(), "test_accuracy", seed=1)
    b = summarize_cells(results_table(), "test_accuracy", seed=1)
    pd.testing.assert_frame_equal(a, b)


def test_bootstrap_ci_edge_cases() -> None:
    assert bootstrap_ci(np.array([0.5, 0.5, 0.5])) == (0.5, 0.5)
    assert all(math.isnan(v) for v in bootstrap_ci(np.array([])))
    low, high = bootstrap_ci(np.array([0.0, 1.0]), "mean", n_boot=4000)
    assert low == 0.0 and high == 1.0  # resamples of two points: means 0, 0.5, 1


def test_paired_comparison_known_answer() -> None:
    p = paired_comparison(results_table(), "test_accuracy", baseline="none").set_index("policy")
    c = p.loc["classical"]
    assert c["n_pairs"] == 5 and c["wins"] == 5
    assert c["mean_diff"] == pytest.approx(0.03) and c["median_diff"] == pytest.approx(0.03)
    assert 0.01 <= c["ci_low"] <= 0.03 <= c["ci_high"] <= 0.05
    assert c["wilcoxon_p"] == pytest.approx(2 / 32)  # exact test: all 5 differences positive
    same = p.loc["same"]
    assert same["mean_diff"] == 0.0 and same["wilcoxon_p"] == 1.0 and same["ci_low"] == same["ci_high"] == 0.0
    lonely = p.loc["lonely"]  # one pair only: no crash, p-value 1
    assert lonely["n_pairs"] == 1 and lonely["mean_diff"] == pytest.approx(0.2) and lonely["wilcoxon_p"] == 1.0


def test_wilcoxon_edge_cases() -> None:
    assert math.isnan(wilcoxon_p(np.array([])))
    assert wilcoxon_p(np.zeros(4)) == 1.0
    assert wilcoxon_p(np.array([-0.1, -0.2, -0.3, -0.4, -0.5])) == pytest.approx(2 / 32)


def test_missing_column_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="lacks column"):
        summarize_cells(results_table(), "test_auroc_macro")


def test_no_baseline_rows_gives_empty_table() -> None:
    assert paired_comparison(results_table(), "test_accuracy", baseline="absent").empty


def test_a_loss_wins_when_it_is_lower() -> None:
    from synthaug.metrics.stats import higher_is_better, metric_columns

    rows = []
    for seed, (base, other) in enumerate([(0.50, 0.40), (0.52, 0.45), (0.49, 0.55)]):
        rows.append({"model": "cnn", "real_fraction": 1.0, "seed": seed, "policy": "none", "test_cross_entropy": base,
                     "test_accuracy": 0.8, "val_auroc_macro": 0.9, "note": "x"})  # fmt: skip
        rows.append({"model": "cnn", "real_fraction": 1.0, "seed": seed, "policy": "p", "test_cross_entropy": other,
                     "test_accuracy": 0.8, "val_auroc_macro": 0.9, "note": "x"})  # fmt: skip
    df = pd.DataFrame(rows)
    assert metric_columns(df) == ["test_cross_entropy", "test_accuracy", "val_auroc_macro"]
    assert not higher_is_better("val_cross_entropy") and higher_is_better("test_auroc_macro")
    row = paired_comparison(df, "test_cross_entropy").iloc[0]
    # differences −0.10, −0.07, +0.06: lower cross-entropy in two seeds is two wins
    assert row["better"] == "lower" and row["wins"] == 2 and row["mean_diff"] == pytest.approx(-0.11 / 3)
    assert paired_comparison(df, "test_accuracy").iloc[0]["better"] == "higher"
