"""A study grows in its run directory by models and arms: only the new cells train, nothing else changes."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest

from synthaug.config import ConfigError, load_config
from synthaug.config.growth import growth
from synthaug.io import read_json, write_json
from synthaug.study.runner import run_study

BASE = [
    "data.size=16",
    "data.phantom.n=64",
    "study.seeds=[0, 1]",
    "study.real_fractions=[0.5]",
    "study.generators=[{family: vae, steps: 2, batch_size: 8, vae: {channels: [8, 16], latent_dim: 8}}]",
    "train.epochs=1",
    "quality.epochs=1",
    "quality.explain.per_class=1",
]
ARMS = '[], ["synthetic:gen=vae,y=1"]'
GROWN_ARMS = ARMS + ', ["classical:p=0.5"], ["synthetic:gen=vae,y=1,schedule=weighted,w=0.5"]'
CNN, RESNET = "{name: cnn}", "{name: resnet18, resnet18: {mode: scratch}}"


def _cfg(arms: str, models: str = CNN, *more: str):
    return load_config(None, [*BASE, f"study.policies=[{arms}]", f"study.models=[{models}]", *more])


def test_growth_takes_added_entries_and_leaves_removals_to_the_comparison() -> None:
    recorded = {"study": {"models": [{"name": "cnn"}], "policies": [[], ["a"]]}, "train": {"lr": 1}}
    study = {"models": [{"name": "resnet18"}, {"name": "cnn"}], "policies": [["a"], [], ["b"]]}
    grown = {"study": study, "train": {"lr": 1}}
    old = copy.deepcopy(recorded)
    assert growth(old, grown) == ["model resnet18", "arm b"]
    assert old == grown  # the growable lists taken over: nothing left to differ
    shrunk = {"study": {"models": [{"name": "cnn"}], "policies": [[]]}, "train": {"lr": 1}}
    old = copy.deepcopy(recorded)
    assert growth(old, shrunk) == [] and old == recorded  # a lost arm stays a difference
    assert growth(copy.deepcopy(recorded), copy.deepcopy(recorded)) == []


def test_a_finished_study_grows_by_models_and_arms_keeping_its_cells(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = run_study(_cfg(ARMS), out)
    before = pd.read_parquet(run.results).set_index("cell_id")
    stamps = {p: p.stat().st_mtime_ns for p in run.root.glob("classifiers/*/metrics.json")}
    banks = {p: p.stat().st_mtime_ns for p in run.root.glob("banks/*/*/complete.json")}
    assert len(before) == 4 and len(stamps) == 4 and banks

    grown = _cfg(GROWN_ARMS, f"{CNN}, {RESNET}")
    run_study(grown, out)
    after = pd.read_parquet(run.results).set_index("cell_id")
    assert len(after) == 2 * 4 * 2  # 2 models x 4 arms x 2 seeds
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # no finished cell trained again
    assert {p: p.stat().st_mtime_ns for p in banks} == banks  # the banks serve the new arms as drawn
    pd.testing.assert_frame_equal(after.loc[before.index, before.columns], before)
    assert set(after["model"]) == {"cnn", "resnet18"}
    assert load_config(run.config) == grown  # the grown study is what the directory now holds
    cams = read_json(run.cams)["classifiers"]
    assert {c["model"] for c in cams} == {"cnn", "resnet18"}  # the CAMs were redone over the new rows
    assert "resnet18" in run.report.read_text()
    run_study(grown, out)  # and it resumes as any study does


def test_growth_that_would_change_a_bank_or_drop_an_arm_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_study(_cfg(ARMS, CNN, "quality.explain.enabled=false"), out)
    bigger = ARMS + ', ["synthetic:gen=vae,y=2"]'
    with pytest.raises(ConfigError, match=r"bank 'vae' of cell f0.5_s0 to hold .* new --out"):
        run_study(_cfg(bigger, CNN, "quality.explain.enabled=false"), out)
    with pytest.raises(ConfigError, match=r"study\.policies differ"):
        run_study(_cfg("[]", CNN, "quality.explain.enabled=false"), out)
    with pytest.raises(ConfigError, match=r"train\.lr differ"):
        run_study(_cfg(GROWN_ARMS, CNN, "quality.explain.enabled=false", "train.lr=0.5"), out)
    recorded = load_config(out / "config.yaml")
    assert recorded == _cfg(ARMS, CNN, "quality.explain.enabled=false")  # a refused start records nothing


def test_a_study_grows_by_seeds_to_the_cells_of_one_run_with_all_of_them(tmp_path: Path) -> None:
    more = ("quality.explain.enabled=false",)
    three = ("study.seeds=[0, 1, 2]",)
    whole = run_study(_cfg(ARMS, CNN, *more, *three), tmp_path / "whole")
    out = tmp_path / "grown"
    run = run_study(_cfg(ARMS, CNN, *more), out)  # seeds 0 and 1
    stamps = {p: p.stat().st_mtime_ns for p in run.root.glob("classifiers/*/metrics.json")}
    recorded = read_json(run.splits)["cells"]

    run_study(_cfg(ARMS, CNN, *more, *three), out)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # seeds 0 and 1 did not train again
    splits = read_json(run.splits)["cells"]
    assert set(splits) == {"0", "1", "2"} and {s: splits[s] for s in recorded} == recorded
    assert splits == read_json(whole.splits)["cells"]
    grown, one = (pd.read_parquet(r.results).set_index("cell_id").sort_index() for r in (run, whole))
    assert len(grown) == 2 * 3
    pd.testing.assert_frame_equal(grown[["test_macro_f1", "test_accuracy"]], one[["test_macro_f1", "test_accuracy"]])
    assert load_config(run.config).study.seeds == [0, 1, 2]

    tampered = read_json(run.splits)
    tampered["cells"]["0"]["0.5"]["train"] = tampered["cells"]["0"]["0.5"]["train"][1:]
    write_json(run.splits, tampered)  # as if the data had changed under the run directory
    with pytest.raises(ConfigError, match=r"cell f0.5_s0 are not those recorded"):
        run_study(_cfg(ARMS, CNN, *more, "study.seeds=[0, 1, 2, 3]"), out)

    with pytest.raises(ConfigError, match=r"study\.seeds differ"):  # the first seed must stay first
        run_study(_cfg(ARMS, CNN, *more, "study.seeds=[2, 0, 1]"), out)
    with pytest.raises(ConfigError, match=r"study\.seeds differ"):  # and none may go
        run_study(_cfg(ARMS, CNN, *more, "study.seeds=[0, 2]"), out)
