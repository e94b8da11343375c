"""benchmarks/export_cells.py and compare_runs.py: a run's cells kept as CSV pair with a live run exactly."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import compare_runs
import export_cells


def _results(run: Path, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        {
            "cell_id": f"cnn__{policy}__f0.1__s{seed}",
            "model": "cnn",
            "policy": policy,
            "policy_spec": '[{"kind": "none"}]',
            "real_fraction": 0.1,
            "seed": seed,
            "test_macro_f1": float(rng.uniform(0.6, 0.8)) + (shift if policy == "ldm" else 0.0),
            "test_accuracy": float(rng.uniform(0.6, 0.8)),
            "train_images_per_s": 300.0 + seed / 7,
        }
        for policy in ("none", "ldm")
        for seed in range(5)
    ]
    run.mkdir(parents=True)
    frame = pd.DataFrame(rows)
    frame.to_parquet(run / "results.parquet")
    return frame


def test_exported_cells_pair_with_their_run_to_the_last_digit(tmp_path: Path) -> None:
    original = _results(tmp_path / "a", shift=0.0)
    csv = tmp_path / "cells" / "a.csv"
    export_cells.export(tmp_path / "a", csv)
    reread = compare_runs.cells(csv).set_index("cell_id").loc[original.cell_id]
    for column in ("test_macro_f1", "test_accuracy", "train_images_per_s", "real_fraction"):
        assert (reread[column].to_numpy() == original[column].to_numpy()).all(), column
    both = compare_runs.paired(csv, tmp_path / "a")
    assert len(both) == 10 and (both.test_macro_f1_a == both.test_macro_f1_b).all()


def test_a_changed_arm_shows_its_shift_against_the_kept_cells(tmp_path: Path) -> None:
    _results(tmp_path / "a", shift=0.0)
    _results(tmp_path / "b", shift=0.05)
    csv = tmp_path / "a.csv"
    export_cells.export(tmp_path / "a", csv)
    rows = compare_runs.table(compare_runs.paired(csv, tmp_path / "b"), ["test_macro_f1"]).set_index("policy")
    assert rows.loc["none", "Δ test_macro_f1 (B − A)"].startswith("+0.000")
    assert rows.loc["ldm", "Δ test_macro_f1 (B − A)"].startswith("+0.050")


def test_a_run_without_results_is_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=r"results\.parquet"):
        export_cells.export(tmp_path / "empty", tmp_path / "x.csv")
    with pytest.raises(SystemExit, match=r"results\.parquet"):
        compare_runs.cells(tmp_path / "empty")


def test_seed_slices_merge_to_the_statistics_of_the_whole_run(tmp_path: Path) -> None:
    import merge_cells

    whole = _results(tmp_path / "whole", shift=0.05)
    first, rest = whole[whole.seed < 2], whole[whole.seed >= 2]
    (tmp_path / "s0-1").mkdir()
    first.to_parquet(tmp_path / "s0-1" / "results.parquet")
    (tmp_path / "s2-4").mkdir()
    rest.to_parquet(tmp_path / "s2-4" / "results.parquet")
    kept = tmp_path / "s0-1.csv"
    export_cells.export(tmp_path / "s0-1", kept)

    sliced = merge_cells.table(merge_cells.merged([kept, tmp_path / "s2-4"]), "test_macro_f1", ["none"])
    one = merge_cells.table(merge_cells.merged([tmp_path / "whole"]), "test_macro_f1", ["none"])
    assert sliced.equals(one)
    row = one.set_index("policy").loc["ldm"]
    by_seed = whole.set_index(["policy", "seed"]).test_macro_f1
    expected = float(np.mean(by_seed.loc["ldm"].to_numpy() - by_seed.loc["none"].to_numpy()))
    assert row["seeds"] == 5 and row["Δ vs none"].startswith(f"{expected:+.3f} [")

    with pytest.raises(SystemExit, match=r"seed 0 of cnn / \w+ is in more than one source"):
        merge_cells.merged([kept, tmp_path / "whole"])
    (tmp_path / "other").mkdir()
    rest[rest.policy == "none"].to_parquet(tmp_path / "other" / "results.parquet")
    with pytest.raises(SystemExit, match="other arms or fractions"):
        merge_cells.merged([kept, tmp_path / "other"])


def test_a_model_one_slice_grew_is_left_out_by_naming_the_shared_one(tmp_path: Path) -> None:
    import merge_cells

    whole = _results(tmp_path / "whole", shift=0.05)
    grown = pd.concat([whole[whole.seed < 2], whole[whole.seed < 2].assign(model="resnet18")])
    (tmp_path / "s0-1").mkdir()
    grown.to_parquet(tmp_path / "s0-1" / "results.parquet")
    (tmp_path / "s2-4").mkdir()
    whole[whole.seed >= 2].to_parquet(tmp_path / "s2-4" / "results.parquet")
    sources = [tmp_path / "s0-1", tmp_path / "s2-4"]

    with pytest.raises(SystemExit, match="other arms or fractions"):
        merge_cells.merged(sources)
    sliced = merge_cells.table(merge_cells.merged(sources, ["cnn"]), "test_macro_f1", ["none"])
    one = merge_cells.table(merge_cells.merged([tmp_path / "whole"]), "test_macro_f1", ["none"])
    assert sliced.equals(one)
    with pytest.raises(SystemExit, match="s2-4 has no cells of --model resnet18"):
        merge_cells.merged(sources, ["resnet18"])


def test_a_baseline_arm_is_named_as_the_report_names_it(tmp_path: Path) -> None:
    import merge_cells

    whole = _results(tmp_path / "whole", shift=0.05)
    whole["policy"] = whole.policy.replace({"ldm": "classical(p=0.5)"})
    rows = merge_cells.table(whole, "test_macro_f1", ["classical 50%"]).set_index("policy")
    assert list(rows.index) == ["classical 50%", "none"]
    assert rows.loc["none", "Δ vs classical 50%"].startswith("-0.0")
    same = merge_cells.table(whole, "test_macro_f1", ["classical(p=0.5)"]).set_index("policy")
    assert same.equals(rows)
    with pytest.raises(SystemExit, match="not an arm of these cells"):
        merge_cells.table(whole, "test_macro_f1", ["classical 20%"])


def test_an_arm_run_apart_pairs_with_the_arms_of_another_run(tmp_path: Path) -> None:
    """``SOURCE::ARM``: an arm grown in its own run directory, paired with the other arms of the same cells."""
    import merge_cells

    whole = _results(tmp_path / "whole", shift=0.05)
    for name, policy in [("base", "none"), ("apart", "ldm")]:
        (tmp_path / name).mkdir()
        whole[whole.policy == policy].to_parquet(tmp_path / name / "results.parquet")
    # the base run also holds its own cells of the arm run apart (another generator pool, say)
    other = whole[whole.policy == "ldm"].assign(test_macro_f1=lambda d: d.test_macro_f1 - 0.3)
    pd.concat([whole[whole.policy == "none"], other]).to_parquet(tmp_path / "base" / "results.parquet")
    base = tmp_path / "base"

    apart = merge_cells.table(merge_cells.merged([f"{base}::none", tmp_path / "apart"]), "test_macro_f1", ["none"])
    one = merge_cells.table(merge_cells.merged([tmp_path / "whole"]), "test_macro_f1", ["none"])
    assert apart.equals(one)
    with pytest.raises(SystemExit, match="other arms or fractions"):  # without ::ARM, slices of one config
        merge_cells.merged([base, tmp_path / "apart"])
    with pytest.raises(SystemExit, match="in more than one source"):  # base's own ldm cells collide
        merge_cells.merged([f"{base}::none", f"{base}::ldm", tmp_path / "apart"])
    with pytest.raises(SystemExit, match=r"no arm 'classical 50%' \(it has \['ldm', 'none'\]\)"):
        merge_cells.merged([f"{base}::classical 50%", tmp_path / "apart"])
    (tmp_path / "short").mkdir()
    whole[(whole.policy == "ldm") & (whole.seed < 3)].to_parquet(tmp_path / "short" / "results.parquet")
    with pytest.raises(SystemExit, match=r"arm 'none' has seeds \[0, 1, 2, 3, 4\] but 'ldm' has \[0, 1, 2\]"):
        merge_cells.merged([f"{base}::none", tmp_path / "short"])
    short = merge_cells.merged([f"{base}::none", tmp_path / "short"], seeds=[0, 1, 2])
    assert sorted(set(short.seed)) == [0, 1, 2] and len(short) == 6
