"""`synthaug table`: the docs' Markdown tables printed from a run's statistics CSVs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from synthaug.cli import app
from synthaug.metrics.stats import paired_comparison, summarize_cells
from synthaug.report.markdown import markdown_table


def _write_run(root: Path, with_paired: bool = True, values: dict[str, list[float]] | None = None) -> None:
    rows = []
    values = values or {
        "none": [0.80, 0.82, 0.81],
        "classical(p=0.2)": [0.83, 0.85, 0.80],
        "autoaugment": [0.70, 0.72, 0.71],
    }
    for policy, accs in values.items():
        for seed, acc in enumerate(accs):
            rows.append(
                {
                    "model": "cnn",
                    "policy": policy,
                    "real_fraction": 1.0,
                    "seed": seed,
                    "test_accuracy": acc,
                    "test_macro_f1": acc - 0.1,
                }
            )
    df = pd.DataFrame(rows)
    stats = root / "statistics"
    stats.mkdir(parents=True)
    df.to_parquet(root / "results.parquet")
    summary = pd.concat([summarize_cells(df, m) for m in ["test_accuracy", "test_macro_f1"]], ignore_index=True)
    summary.to_csv(stats / "summary.csv", index=False)
    if with_paired:
        paired_comparison(df, "test_accuracy", baseline="none").to_csv(stats / "paired.csv", index=False)


def test_table_has_one_row_per_policy_baseline_first_and_the_paired_columns(tmp_path: Path) -> None:
    _write_run(tmp_path)
    text = markdown_table(tmp_path)
    lines = text.strip().splitlines()
    assert lines[0].startswith("| policy | seeds | test accuracy, median [95% CI] | macro-F1")
    assert "paired Δ accuracy vs none" in lines[0]
    body = lines[2:]
    assert [line.split(" | ")[0] for line in body] == ["| none", "| autoaugment", "| classical 20%"]
    none, aa, cl = body
    assert "0.810 [" in none and none.endswith("| – | – | – |")
    # autoaugment is 0.10 below none in every seed: mean difference −0.100, no wins, the
    # smallest two-sided Wilcoxon p for three pairs
    assert "\u22120.100 [\u22120.100, \u22120.100]" in aa and "| 0 / 3 | 0.25 |" in aa
    # classical: differences +0.03, +0.03, −0.01 -> mean +0.017, two wins
    assert "+0.017 [" in cl and "| 2 / 3 |" in cl
    # the macro-F1 column is the accuracy shifted by 0.1
    assert "0.710 [" in none


def test_a_small_wilcoxon_p_is_not_printed_as_zero(tmp_path: Path) -> None:
    # ten seeds, all below none: the two-sided Wilcoxon p is 2/1024 = 0.00195, which two decimals round to 0.00
    _write_run(
        tmp_path, values={"none": [0.80 + i / 100 for i in range(10)], "worse": [0.75 + i / 100 for i in range(10)]}
    )
    worse = markdown_table(tmp_path).strip().splitlines()[-1]
    assert worse.startswith("| worse |") and "| 0 / 10 | 0.002 |" in worse


def test_unknown_paired_metric_is_named(tmp_path: Path) -> None:
    _write_run(tmp_path)
    with pytest.raises(ValueError, match=r"test_macro_f1.*paired\.csv"):
        markdown_table(tmp_path, paired_metric="test_macro_f1")


def test_table_without_paired_csv_and_metric_choice(tmp_path: Path) -> None:
    _write_run(tmp_path, with_paired=False)
    text = markdown_table(tmp_path, metrics=["test_macro_f1"])
    assert "paired" not in text and "test accuracy" not in text
    with pytest.raises(ValueError, match="test_auroc"):
        markdown_table(tmp_path, metrics=["test_auroc"])


def test_cli_table_prints_and_names_a_missing_statistics_file(tmp_path: Path) -> None:
    _write_run(tmp_path / "run")
    runner = CliRunner()
    ok = runner.invoke(app, ["table", str(tmp_path / "run")])
    assert ok.exit_code == 0, ok.output
    assert "| classical 20% |" in ok.output
    bad = runner.invoke(app, ["table", str(tmp_path / "empty")])
    assert bad.exit_code == 2
    assert "summary.csv is missing" in bad.output


def test_cross_entropy_table_from_a_real_study(tmp_path: Path) -> None:
    """The statistics stage summarises every recorded metric, losses included (lower is better)."""
    from synthaug.config import load_config
    from synthaug.study.runner import run_study

    config = tmp_path / "tiny.yaml"
    config.write_text(
        "data: {source: phantom, size: 16, phantom: {n: 64}}\n"
        "study: {seeds: [0, 1], policies: [[], ['classical:p=0.5']], workers: 1, device: cpu}\n"
        "train: {epochs: 1, batch_size: 16, patience: 0}\nquality: {explain: {enabled: false}}\n"
    )
    run = run_study(load_config(config), tmp_path / "run")
    summary = pd.read_csv(run.summary)
    for metric in ["test_cross_entropy", "val_cross_entropy", "test_auroc_macro", "val_accuracy", "test_f1_glioma"]:
        assert metric in set(summary["metric"])
    result = CliRunner().invoke(
        app, ["table", str(run.root), "--metric", "test_cross_entropy", "--paired-metric", "test_cross_entropy"]
    )
    assert result.exit_code == 0, result.output
    assert "test cross-entropy (lower is better), median [95% CI]" in result.output
    assert "paired Δ cross-entropy (lower is better) vs none" in result.output


def test_against_another_policy_adds_its_paired_column(tmp_path: Path) -> None:
    _write_run(tmp_path / "run")
    result = CliRunner().invoke(app, ["table", str(tmp_path / "run"), "--against", "classical 20%"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].endswith("| Δ accuracy vs classical 20%, mean [95% CI], p (wins) |")
    aa = next(line for line in lines if line.startswith("| autoaugment"))
    # autoaugment − classical: −0.13, −0.13, −0.09 -> mean −0.117, no wins
    assert aa.endswith("p=0.25 (0/3) |") and "\u22120.117 [" in aa
    assert next(line for line in lines if line.startswith("| classical 20%")).endswith("| – |")
    bad = CliRunner().invoke(app, ["table", str(tmp_path / "run"), "--against", "classical 70%"])
    assert bad.exit_code == 2 and "no such policy" in bad.output
