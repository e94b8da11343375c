"""The study's classifier grid: one row per cell, statistics, report, and resume after a real kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from synthaug.config import load_config
from synthaug.study.runner import run_study

TINY = """
data: {source: phantom, size: 16, phantom: {n: 64}}
study: {seeds: [0, 1], real_fractions: [1.0], policies: [[], ["classical:p=0.5"]], workers: 1, device: cpu}
train: {epochs: 2, batch_size: 16, patience: 0}
"""
STABLE = ["cell_id", "model", "policy", "real_fraction", "seed", "epochs_run", "n_train"]
STABLE += ["test_accuracy", "test_macro_f1", "test_cross_entropy", "val_cross_entropy"]


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def test_grid_writes_results_statistics_and_report(tmp_path: Path) -> None:
    run = run_study(load_config(_config(tmp_path)), tmp_path / "run")
    df = pd.read_parquet(run.root / "results.parquet")
    assert sorted(df["policy"]) == ["classical(p=0.5)", "classical(p=0.5)", "none", "none"]
    none, classical = df[df["policy"] == "none"], df[df["policy"] != "none"]
    assert set(none["seed"]) == set(classical["seed"]) == {0, 1}
    # Seeds pair across policies: the same real images, plus p·N classical copies.
    assert (classical.sort_values("seed")["n_real"].to_numpy() == none.sort_values("seed")["n_real"].to_numpy()).all()
    assert (classical["n_train"].to_numpy() > classical["n_real"].to_numpy()).all()
    paired = pd.read_csv(run.root / "statistics" / "paired.csv")
    assert set(paired["policy"]) == {"classical(p=0.5)"} and (paired["n_pairs"] == 2).all()
    html = (run.root / "report.html").read_text()
    assert "Results per cell" in html and "Paired differences" in html


def _spawn(config: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "synthaug", "run", str(config), "--out", str(out)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_killed_study_resumes_to_the_same_results(tmp_path: Path) -> None:
    config = _config(tmp_path)
    reference = run_study(load_config(config), tmp_path / "ref")
    proc = _spawn(config, tmp_path / "killed")
    deadline = time.time() + 240
    while not list((tmp_path / "killed" / "classifiers").glob("*/metrics.json")):
        assert proc.poll() is None, "the study ended before it could be killed"
        assert time.time() < deadline, "no cell finished in time"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p.parent.name for p in (tmp_path / "killed" / "classifiers").glob("*/metrics.json")}
    assert 1 <= len(done_before) < 4
    stamps = {c: (tmp_path / "killed" / "classifiers" / c / "metrics.json").stat().st_mtime_ns for c in done_before}
    assert _spawn(config, tmp_path / "killed").wait(timeout=600) == 0
    for c, stamp in stamps.items():  # finished cells were not trained again
        assert (tmp_path / "killed" / "classifiers" / c / "metrics.json").stat().st_mtime_ns == stamp
    got = pd.read_parquet(tmp_path / "killed" / "results.parquet")[STABLE].sort_values("cell_id").reset_index(drop=True)
    want = pd.read_parquet(reference.root / "results.parquet")[STABLE].sort_values("cell_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_exact=False, atol=1e-6)


def test_a_run_directory_from_before_a_new_setting_resumes(tmp_path: Path) -> None:
    """Settings added later default to the earlier behaviour, so a run recorded without them resumes."""
    import yaml

    config = _config(tmp_path)
    run = run_study(load_config(config), tmp_path / "run")
    recorded = yaml.safe_load(run.config.read_text())
    recorded.pop("report")
    for key in ("lesion_scale", "lesion_contrast"):
        recorded["data"]["phantom"].pop(key)
    run.config.write_text(yaml.safe_dump(recorded))
    again = run_study(load_config(config), tmp_path / "run")  # no "holds a study with a different configuration"
    assert len(pd.read_parquet(again.results)) == 4
    changed = load_config(config, ["data.phantom.lesion_scale=2"])
    with pytest.raises(Exception, match="lesion_scale"):
        run_study(changed, tmp_path / "run")
