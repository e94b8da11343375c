"""Synthetic augmentation policies: how many images each takes, from which bank, with which filters;
the config checks that name generators; and a tiny study whose generators saw only their cell's
real training images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from synthaug.augment import build_policy, expand_training_set, parse_policy, take_from_bank
from synthaug.config import ConfigError, load_config
from synthaug.data.cells import Cell
from synthaug.data.imageset import ImageSet
from synthaug.generators import fit, write_bank
from synthaug.io import read_json
from synthaug.rundir import SCORES, RunDir
from synthaug.study.runner import run_study
from tests.test_generators import single_thread, tiny_cfg, tiny_data  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _imbalanced(counts: tuple[int, ...] = (6, 3, 9)) -> ImageSet:
    data = tiny_data(n=60)
    keep = np.concatenate([np.flatnonzero(data.labels == c)[:n] for c, n in enumerate(counts)])
    return data.subset(keep)


def _counts(policy: str, real: ImageSet, fraction: float = 1.0) -> list[int]:
    return build_policy(parse_policy(policy)).request(real, fraction).counts.tolist()  # type: ignore[attr-defined]


def test_synthetic_counts_are_stratified_like_the_real_subset() -> None:
    real = _imbalanced()
    assert _counts("synthetic:gen=g,y=1", real) == [6, 3, 9]
    assert _counts("synthetic:gen=g,y=0.5", real) == [3, 2, 4]  # round half to even: 1.5 -> 2, 4.5 -> 4
    assert _counts("synthetic:gen=g,y=0", real) == [0, 0, 0]
    assert _counts("synthetic:gen=g,per_class=200", real) == [200, 200, 200]


def test_fill_tops_a_fraction_up_to_the_full_size() -> None:
    real = _imbalanced((3, 3, 6))  # a 30% subset of (10, 10, 20)
    assert _counts("synthetic:gen=g,fill=true", real, fraction=0.3) == [7, 7, 14]
    assert _counts("synthetic:gen=g,fill=true", real, fraction=1.0) == [0, 0, 0]
    assert _counts("variation:gen=g,fill=true", real, fraction=0.5) == [3, 3, 6]


def test_balance_tops_every_class_up_to_the_largest() -> None:
    assert _counts("balance:gen=g", _imbalanced()) == [3, 6, 0]
    assert _counts("balance:gen=g", _imbalanced((4, 4, 4))) == [0, 0, 0]


def test_variation_reads_the_variation_bank_of_its_generator() -> None:
    req = build_policy(parse_policy("variation:gen=ddpm,y=1")).request(_imbalanced(), 1.0)  # type: ignore[attr-defined]
    assert (req.bank, req.generator, req.variation) == ("ddpm-variation", "ddpm", True)
    req = build_policy(parse_policy("synthetic:gen=ddpm")).request(_imbalanced(), 1.0)  # type: ignore[attr-defined]
    assert (req.bank, req.variation, req.filtered) == ("ddpm", False, False)


def test_policy_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="missing parameter 'gen'"):
        build_policy(parse_policy("synthetic"))
    with pytest.raises(ValueError, match="y: Input should be greater than or equal to 0"):
        build_policy(parse_policy("synthetic:gen=g,y=-1"))
    with pytest.raises(ValueError, match="per_class"):
        build_policy(parse_policy("synthetic:gen=g,per_class=5,fill=true"))
    with pytest.raises(ValueError, match="min_confidence: Input should be less than or equal to 1"):
        build_policy(parse_policy("synthetic:gen=g,min_confidence=2"))


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real bank (VAE, 3 training steps) with 6 images of each of 3 classes and a hand-made score table."""
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bank")
    gen = fit(tiny_data(), tiny_cfg("vae"), root / "gen", seed=0)
    out = root / "bank"
    manifest = write_bank(gen, out, {0: 6, 1: 6, 2: 6}, seed=0)
    ids = sorted(manifest["id"])
    scores = pd.DataFrame(
        {
            "id": ids,
            "class_id": [int(i.split("-c")[1][0]) for i in ids],
            "confidence": [0.95 if k % 2 == 0 else 0.2 for k in range(len(ids))],  # every other image is doubtful
            "predicted": [0] * len(ids),
            "memorized": [k % 3 == 0 for k in range(len(ids))],
        }
    )
    scores.to_parquet(out / SCORES)
    return out


def test_take_from_bank_takes_the_first_images_of_each_class(bank: Path) -> None:
    got = take_from_bank(bank, np.array([2, 0, 5]))
    assert got.class_counts().tolist() == [2, 0, 5]
    again = take_from_bank(bank, np.array([2, 0, 5]))
    assert got.ids.tolist() == again.ids.tolist()  # same cell, same images
    more = take_from_bank(bank, np.array([3, 0, 5]))
    assert set(got.ids) < set(more.ids)  # a larger request extends a smaller one


def test_filters_read_the_quality_scores(bank: Path) -> None:
    scores = pd.read_parquet(bank / SCORES).set_index("id")
    confident = take_from_bank(bank, np.array([6, 6, 6]), min_confidence=0.9)
    assert len(confident) == 9 and (scores.loc[list(confident.ids), "confidence"] >= 0.9).all()
    clean = take_from_bank(bank, np.array([6, 6, 6]), drop_memorized=True)
    assert len(clean) == 12 and not scores.loc[list(clean.ids), "memorized"].any()
    both = take_from_bank(bank, np.array([6, 6, 6]), min_confidence=0.9, drop_memorized=True)
    assert set(both.ids) == set(confident.ids) & set(clean.ids)


def test_filtering_without_scores_says_to_run_the_quality_stage(bank: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "bank"
    shutil.copytree(bank, copy)
    (copy / SCORES).unlink()
    assert len(take_from_bank(copy, np.array([1, 1, 1]))) == 3  # unfiltered needs no scores
    with pytest.raises(FileNotFoundError, match="quality stage"):
        take_from_bank(copy, np.array([1, 1, 1]), min_confidence=0.5)
    with pytest.raises(FileNotFoundError, match="no synthetic bank"):
        take_from_bank(tmp_path / "nowhere", np.array([1, 1, 1]))


def test_policies_combine_with_classical_and_need_a_run_directory(bank: Path, tmp_path: Path) -> None:
    real = tiny_data(n=12)  # 4 per class
    run = tmp_path / "run"
    target = RunDir(run).bank_dir("vae", 1.0, 0)
    target.parent.mkdir(parents=True)
    target.symlink_to(bank)
    policies = [build_policy(parse_policy(p)) for p in ("synthetic:gen=vae,y=0.5", "classical:p=0.5")]
    cell = Cell.of(real, 1.0, 0, val_fraction=0.15, run=RunDir(run))
    out = expand_training_set(real, policies, seed=0, cell=cell)
    assert len(out) == 12 + 6 + 6  # real + y·N synthetic + p·N classical copies of the real images
    assert sum(str(i).startswith("vae-") for i in out.ids) == 6
    with pytest.raises(ValueError, match="run directory"):
        expand_training_set(real, policies[:1], seed=0)


# ---------------------------------------------------------------- configuration


def _config(policies: list[Any], generators: list[Any] | None = None, extra: list[str] | None = None) -> Any:
    import json

    sets = [f"study.policies={json.dumps(policies)}", *(extra or [])]
    if generators is not None:
        sets.append(f"study.generators={json.dumps(generators)}")
    return load_config(None, sets)


def test_config_checks_that_policies_name_defined_generators() -> None:
    gens = [{"family": "ddpm"}, {"family": "vae", "name": "vae-small"}]
    cfg = _config([["synthetic:gen=ddpm"], ["balance:gen=vae-small"]], gens)
    assert [g.name for g in cfg.study.generators] == ["ddpm", "vae-small"]
    with pytest.raises(ConfigError, match="Did you mean 'vae-small'"):
        _config([["synthetic:gen=vae-smal"]], gens)
    with pytest.raises(ConfigError, match="missing parameter 'gen'"):
        _config([["synthetic"]], gens)
    able = r"\(\[.ddpm., .ldm., .folder., .pretrained.\]\)"
    with pytest.raises(ConfigError, match=r"variations need a family that makes them " + able):
        _config([["variation:gen=vae-small"]], gens)
    with pytest.raises(ConfigError, match="unique"):
        _config([["none"]], [{"family": "vae"}, {"family": "vae"}])
    with pytest.raises(ConfigError, match=r"quality\.enabled"):
        _config([["synthetic:gen=ddpm,min_confidence=0.5"]], gens, ["quality.enabled=false"])


# ---------------------------------------------------------------- a study with generators


TINY_STUDY = """
data: {source: phantom, size: 16, phantom: {n: 96, imbalance: {meningioma: 0.5}}}
study:
  seeds: [0, 1]
  real_fractions: [0.5, 1.0]
  workers: 1
  device: cpu
  models: [{name: cnn, cnn: {channels: [4, 8], hidden: [16, 8]}}]
  generators:
    - {family: vae, steps: 4, batch_size: 8, checkpoint_every: 2, sample_every: 0,
       vae: {channels: [8, 16], latent_dim: 8}}
  policies: [[], ["synthetic:gen=vae,y=0.5"], ["balance:gen=vae", "basic"], ["synthetic:gen=vae,fill=true"]]
  bank: {batch_size: 16}
quality: {enabled: false}
train: {epochs: 1, batch_size: 16, patience: 0}
"""


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("study")
    (root / "tiny.yaml").write_text(TINY_STUDY)
    run_study(load_config(root / "tiny.yaml"), root / "run")
    return root / "run"


def test_generators_see_only_their_cells_real_training_images(tiny_study: Path) -> None:
    splits = read_json(tiny_study / "splits.json")
    test = set(splits["test"])
    dirs = sorted((tiny_study / "generators" / "vae").iterdir())
    assert [d.name for d in dirs] == ["f0.5_s0", "f0.5_s1", "f1_s0", "f1_s1"]  # once per (fraction, seed)
    for d in dirs:
        fraction, seed = d.name[1:].split("_s")
        cell = splits["cells"][seed][fraction]
        seen = set(read_json(d / "trained_on.json")["ids"])
        assert seen == set(cell["train"])
        assert not seen & set(cell["val"]) and not seen & test
        assert (d / "generator.pt").exists()


def test_every_policy_gets_its_share_from_the_shared_bank(tiny_study: Path) -> None:
    df = pd.read_parquet(tiny_study / "results.parquet").set_index(["policy", "real_fraction", "seed"])
    assert len(df) == 4 * 2 * 2
    for (policy, fraction, seed), row in df.iterrows():
        none = df.loc[("none", fraction, seed)]
        assert row["n_real"] == none["n_real"]  # paired: the same real subset in every policy
        added = row["n_train"] - row["n_real"]
        if policy == "synthetic(gen=vae,y=0.5)":
            assert 0 < added <= 0.5 * row["n_real"] + 2
        elif policy == "balance(gen=vae)+basic":
            assert added > 0  # the phantom's second class has half the images
        elif policy == "synthetic(fill=True,gen=vae)":
            full = df.loc[("none", 1.0, seed)]["n_real"]
            assert (added == 0) if fraction == 1.0 else abs(row["n_train"] - full) <= 4
    manifest = pd.read_parquet(RunDir(tiny_study).bank_dir("vae", 0.5, 0) / "manifest.parquet")
    assert (
        manifest["id"].is_unique
        and len(manifest)
        >= df.loc[("synthetic(fill=True,gen=vae)", 0.5, 0)]["n_train"] - (df.loc[("none", 0.5, 0)]["n_real"])
    )


def test_rerun_trains_and_draws_nothing_again(tiny_study: Path) -> None:
    watched = [
        RunDir(tiny_study).generator_dir("vae", 1.0, 0) / "generator.pt",
        RunDir(tiny_study).bank_dir("vae", 1.0, 0) / "manifest.parquet",
    ]
    stamps = [p.stat().st_mtime_ns for p in watched]
    results = pd.read_parquet(tiny_study / "results.parquet")
    run_study(load_config(tiny_study / "config.yaml"), tiny_study)
    assert [p.stat().st_mtime_ns for p in watched] == stamps
    pd.testing.assert_frame_equal(pd.read_parquet(tiny_study / "results.parquet"), results)
    assert (
        "Synthetic" in (tiny_study / "report.html").read_text()
        or "synthetic" in (tiny_study / "report.html").read_text()
    )


KILLED_STUDY = """
data: {source: phantom, size: 16, phantom: {n: 64}}
study:
  seeds: [0]
  real_fractions: [1.0]
  workers: 1
  device: cpu
  models: [{name: cnn, cnn: {channels: [4, 8], hidden: [16, 8]}}]
  generators:
    - {family: vae, steps: 800, batch_size: 8, checkpoint_every: 40, sample_every: 0,
       vae: {channels: [8, 16], latent_dim: 8}}
  policies: [[], ["synthetic:gen=vae,y=1"]]
quality: {enabled: false, explain: {enabled: false}}
train: {epochs: 1, batch_size: 16, patience: 0, threads: 1}
"""


@pytest.mark.slow
def test_study_killed_while_training_a_generator_resumes_to_the_same_results(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    config = tmp_path / "study.yaml"
    config.write_text(KILLED_STUDY)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}

    def spawn(out: Path) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "synthaug", "run", str(config), "--out", str(out)]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    assert spawn(tmp_path / "ref").wait(timeout=600) == 0
    proc, work = spawn(tmp_path / "killed"), RunDir(tmp_path / "killed").generator_dir("vae", 1.0, 0)
    deadline = time.time() + 300
    while not (work / "train_state.pt").exists():
        assert proc.poll() is None, "the study ended before its generator could be killed"
        assert time.time() < deadline, "the generator wrote no checkpoint in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (work / "generator.pt").exists(), "killed too late: the generator had finished"
    assert spawn(tmp_path / "killed").wait(timeout=600) == 0
    cols = ["cell_id", "n_train", "test_accuracy", "test_cross_entropy", "val_cross_entropy"]
    got = pd.read_parquet(tmp_path / "killed" / "results.parquet")[cols].sort_values("cell_id").reset_index(drop=True)
    want = pd.read_parquet(tmp_path / "ref" / "results.parquet")[cols].sort_values("cell_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_exact=False, atol=1e-6)
    loss = pd.read_csv(work / "loss.csv")
    assert loss["step"].tolist() == list(range(1, 801))  # the loss curve continues, no step twice
