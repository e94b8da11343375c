"""The report's summary: the primary metric, the best approach, synthetic vs baseline and vs the best classical."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from synthaug.config import load_config
from synthaug.report.verdict import primary_metric, verdict
from synthaug.rundir import RunDir

SPECS = {
    "none": [],
    "classical(p=0.5)": [{"name": "classical", "params": {"p": 0.5}}],
    "synthetic(gen=vae)": [{"name": "synthetic", "params": {"gen": "vae"}}],
}
# seed -> macro-F1: synthetic beats none by ~+0.05 in every seed but loses to classical by ~0.03
F1 = {"none": [0.70, 0.72, 0.71, 0.69, 0.70, 0.73], "classical(p=0.5)": [0.78, 0.80, 0.79, 0.78, 0.79, 0.81]}
F1["synthetic(gen=vae)"] = [v + 0.05 + 0.001 * i for i, v in enumerate(F1["none"])]


def _run(tmp_path: Path, test_counts: list[int]) -> tuple[RunDir, pd.DataFrame]:
    rows = []
    for policy, values in F1.items():
        for seed, v in enumerate(values):
            cid = f"cnn__{policy}__f0.1__s{seed}"
            rows.append({"cell_id": cid, "model": "cnn", "policy": policy, "policy_spec": json.dumps(SPECS[policy]),
                         "real_fraction": 0.1, "seed": seed, "test_macro_f1": v, "test_accuracy": v + 0.1})  # fmt: skip
    run = RunDir(tmp_path)
    cell = run.classifier_dir(rows[0]["cell_id"])
    cell.mkdir(parents=True)
    names = [f"c{i}" for i in range(len(test_counts))]
    matrix = pd.DataFrame([[n if i == j else 0 for j in range(len(names))] for i, n in enumerate(test_counts)],
                          index=pd.Index(names, name="true"), columns=names)  # fmt: skip
    matrix.to_csv(cell / "confusion.csv")
    return run, pd.DataFrame(rows)


def _cfg(*sets: str):
    return load_config(None, ["study.generators=[{family: vae, name: vae}]", *sets])


def test_imbalanced_test_split_makes_macro_f1_primary(tmp_path: Path) -> None:
    run, df = _run(tmp_path, [300, 300, 30, 300])
    metric, why = primary_metric(_cfg(), run, df)
    assert metric == "test_macro_f1" and "imbalanced" in why and "30" in why
    run2, df2 = _run(tmp_path / "b", [100, 100, 100, 100])
    assert primary_metric(_cfg(), run2, df2)[0] == "test_accuracy"
    assert primary_metric(_cfg("report.metric=test_macro_f1"), run2, df2)[0] == "test_macro_f1"


def test_synthetic_is_compared_with_none_and_with_the_best_classical(tmp_path: Path) -> None:
    run, df = _run(tmp_path, [300, 300, 30, 300])
    html = verdict(run, df, _cfg())
    assert "best approach <b>classical 50%</b>" in html
    line = next(li for li in html.split("<li>") if li.startswith("synthetic(gen=vae)"))
    assert "<b>better than none</b>" in line and "<b>worse than classical 50%</b>" in line
    assert "6/6 seeds better" in line and "0/6 seeds better" in line
    assert "smallest two-sided Wilcoxon p" not in html  # six seeds can reach p < 0.05
    assert html.count("<img") == 1  # the forest plot
    few = df[df["seed"] < 3]
    assert "no difference can reach p &lt; 0.05" in verdict(run, few, _cfg())


def test_warnings_name_a_class_never_predicted_few_seeds_leakage_and_a_chance_judge(tmp_path: Path) -> None:
    from synthaug.config import dump_config
    from synthaug.io import write_json
    from synthaug.report.verdict import warnings

    run, df = _run(tmp_path, [300, 300, 30, 300])
    df = df.assign(test_f1_c0=0.8, test_f1_c2=0.0)
    policies = "study.policies=[[], ['synthetic:gen=vae,per_class=2,min_confidence=0.5']]"
    run.config.write_text(dump_config(_cfg(policies)))
    write_json(run.audit, {"leakage_filter": {"removed_test_images": 492, "test_images_kept": 820}})
    judge = {"test": {"balanced_accuracy": 0.26, "per_class": {f"c{i}": {} for i in range(4)}}}
    overall = {"fid": 10.0, "recall": 0.01}
    write_json(run.quality, {
        "cells": {"f0.1_s0": {"judge": judge, "real_train_vs_real_test": {"judge": {"overall": {"fid": 5.0}}}}},
        "banks": [{"bank": "vae", "fraction": 0.1, "seed": 0, "quality": {"judge": {"vs_test": {"overall": overall}}},
                   "class_counts": {"c0": 100, "c1": 100},
                   "filtering": {"min_confidence": {"0.5": {"c0": 90, "c1": 3}, "0.9": {"c0": 1, "c1": 0}}}}],
    })  # fmt: skip
    found = warnings(run, df)
    text = " ".join(t for t, _ in found)
    assert "Class 'c2'" in text and "Class 'c0'" not in text
    assert "492 test images" in text and "at chance" in text and "seed 0: 0.01" in text
    assert "keeps almost nothing of c1 3 of 100" in text and "c0 90" not in text
    assert "≥ 0.9" not in text  # a threshold no policy of the study uses
    assert "seed(s) per approach" not in text  # six seeds
    assert "seed(s) per approach" in " ".join(t for t, _ in warnings(run, df[df["seed"] < 3]))


def test_a_study_without_its_baseline_arm_still_gets_a_report(tmp_path: Path) -> None:
    """An arm run in its own run directory (to pair with another run's none cells) crashed the report stage."""
    run, df = _run(tmp_path, [300, 300, 30, 300])
    html = verdict(run, df[df.policy == "synthetic(gen=vae)"], _cfg())
    assert "best approach <b>synthetic(gen=vae)</b>" in html and "better than none" not in html
