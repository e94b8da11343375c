"""How added images are used: ``schedule=mix | pretrain | weighted`` on the synthetic policies and on
classical expansion (its pretrain schedule is the control for synthetic pretraining)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from synthaug.augment import build_policy, parse_policy, training_plan
from synthaug.classifiers import ClassifierConfig, TrainConfig
from synthaug.classifiers.cell import run_cell
from synthaug.classifiers.train import weighted_loss
from synthaug.config import ConfigError, load_config
from synthaug.config.policies import describe
from synthaug.data.cells import Cell
from synthaug.generators import fit, write_bank
from synthaug.rundir import RunDir
from tests.test_generators import single_thread, tiny_cfg, tiny_data  # noqa: F401

CFG = ClassifierConfig(train=TrainConfig(epochs=6, batch_size=8, patience=2))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    """A run directory holding one VAE bank (3 training steps) for the cell (fraction 1, seed 0)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("sched")
    gen = fit(tiny_data(), tiny_cfg("vae"), root / "gen", seed=0)
    run = RunDir(root / "run")
    write_bank(gen, run.bank_dir("vae", 1.0, 0), {0: 30, 1: 30, 2: 30}, seed=0)
    return run


def _cell(run: RunDir) -> tuple[Cell, object, object]:
    pool = tiny_data(n=60, seed=1)
    return Cell.of(pool, 1.0, 0, val_fraction=0.2, run=run), pool, tiny_data(n=30, seed=2)


def _row(run: RunDir, policy: str, out: Path) -> dict:
    cell, pool, test = _cell(run)
    return run_cell(pool, test, CFG, [policy], cell, out, device="cpu")  # type: ignore[arg-type]


def test_weighted_with_w_1_is_mix_exactly(run: RunDir, tmp_path: Path) -> None:
    mix = _row(run, "synthetic:gen=vae,y=2", tmp_path / "mix")
    same = _row(run, "synthetic:gen=vae,y=2,schedule=weighted,w=1", tmp_path / "w1")
    metrics = [k for k in mix if k.startswith(("test_", "val_")) or k in ("epochs_run", "best_epoch", "n_train")]
    assert {k: same[k] for k in metrics} == {k: mix[k] for k in metrics}
    light = _row(run, "synthetic:gen=vae,y=2,schedule=weighted,w=0.1", tmp_path / "w01")
    assert light["n_train"] == mix["n_train"] and light["val_cross_entropy"] != mix["val_cross_entropy"]


def test_a_vanishing_weight_removes_an_image_from_the_loss() -> None:
    torch.manual_seed(0)
    logits, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    real = torch.tensor([1, 1, 1, 0, 0, 0], dtype=torch.float32)  # the last three are synthetic
    plain = nn.CrossEntropyLoss()
    assert torch.allclose(weighted_loss(plain, logits, y, torch.ones(6)), plain(logits, y))
    tiny = weighted_loss(plain, logits, y, real + 1e-9 * (1 - real))
    only_real = nn.functional.cross_entropy(logits[:3], y[:3], reduction="sum") / 6
    assert torch.allclose(tiny, only_real, atol=1e-7)
    cw = torch.tensor([1.0, 2.0, 0.5])  # class weights: the plain weighted mean when every w = 1
    weighted = nn.CrossEntropyLoss(weight=cw)
    assert torch.allclose(weighted_loss(weighted, logits, y, torch.ones(6)), weighted(logits, y))


def test_pretrain_runs_both_phases_and_stops_early_on_the_real_validation_loss(run: RunDir, tmp_path: Path) -> None:
    policy = "synthetic:gen=vae,y=2,schedule=pretrain,pretrain_epochs=3,finetune_lr=0.0005"
    row = _row(run, policy, tmp_path / "pre")
    history = pd.read_csv(tmp_path / "pre" / "history.csv")
    assert history["phase"].tolist()[:3] == [1, 1, 1] and set(history["phase"].iloc[3:]) == {2}
    assert history["lr"].iloc[3] == pytest.approx(0.0005)
    phase2 = history[history["phase"] == 2]
    assert row["epochs_run"] == len(history) and 3 < row["best_epoch"] <= len(history)
    best = phase2["val_loss"].idxmin()
    assert history.loc[best, "epoch"] == row["best_epoch"]  # best weights from the fine-tuning phase
    if len(phase2) < CFG.train.epochs:  # it stopped early: patience epochs without improvement
        assert len(phase2) - (row["best_epoch"] - 3) == CFG.train.patience


def test_the_plan_says_which_images_train_in_which_phase(run: RunDir) -> None:
    cell, pool, _ = _cell(run)
    real = cell.fit(pool)  # type: ignore[arg-type]
    policies = [build_policy(parse_policy(p)) for p in ("synthetic:gen=vae,y=1,schedule=pretrain", "classical:p=0.5")]
    data, plan = training_plan(real, policies, 0, cell)
    synthetic = np.array([str(i).startswith("vae-") for i in data.ids])
    assert plan.pretrain is not None and plan.finetune is not None
    assert (plan.pretrain == synthetic).all() and (plan.finetune == ~synthetic).all()  # classical copies: phase 2
    with_real = build_policy(parse_policy("synthetic:gen=vae,y=1,schedule=pretrain,pretrain_with_real=true"))
    _, plan = training_plan(real, [with_real], 0, cell)
    assert plan.pretrain is not None and plan.pretrain.all()
    _, plan = training_plan(
        real, [build_policy(parse_policy("synthetic:gen=vae,y=1,schedule=weighted,w=0.25"))], 0, cell
    )
    assert plan.weights is not None and sorted(set(plan.weights.tolist())) == [0.25, 1.0] and plan.pretrain is None
    _, plan = training_plan(real, [build_policy(parse_policy("synthetic:gen=vae,y=1"))], 0, cell)
    assert plan.weights is None and plan.pretrain is None  # mix: nothing for the loop to do


def test_classical_copies_can_pretrain_too_the_control_for_synthetic_pretraining(run: RunDir, tmp_path: Path) -> None:
    cell, pool, _ = _cell(run)
    real = cell.fit(pool)  # type: ignore[arg-type]
    data, plan = training_plan(real, [build_policy(parse_policy("classical:p=2,schedule=pretrain"))], 0, cell)
    assert len(data) == 3 * len(real) and plan.pretrain is not None and plan.finetune is not None
    copies = np.arange(len(data)) >= len(real)  # the expansion appends its copies after the real images
    assert (plan.pretrain == copies).all() and (plan.finetune == ~copies).all()
    row = _row(run, "classical:p=2,schedule=pretrain,pretrain_epochs=2", tmp_path / "cpre")
    history = pd.read_csv(tmp_path / "cpre" / "history.csv")
    assert history["phase"].tolist()[:2] == [1, 1] and set(history["phase"].iloc[2:]) == {2}
    assert row["best_epoch"] > 2  # the kept weights are the fine-tuned ones
    assert "copies of real images; pretrain on them alone for 2 epochs" in describe(
        [parse_policy("classical:p=2,schedule=pretrain,pretrain_epochs=2")]
    )
    with pytest.raises(ValueError, match="needs schedule=weighted"):
        build_policy(parse_policy("classical:p=0.5,w=0.5"))


def test_schedule_parameters_are_checked_and_described() -> None:
    for bad, msg in [("synthetic:gen=g,w=0.5", "w .a loss weight. needs schedule=weighted"),
                     ("synthetic:gen=g,pretrain_epochs=3", "pretrain_epochs need schedule=pretrain"),
                     ("synthetic:gen=g,schedule=weighted,w=0", "greater than 0"),
                     ("synthetic:gen=g,schedule=later", "schedule")]:  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            build_policy(parse_policy(bad))
    with pytest.raises(ConfigError, match="needs schedule=weighted"):
        load_config(None, ["study.generators=[{family: vae}]", "study.policies=[['synthetic:gen=vae,w=0.5']]"])
    text = describe([parse_policy("synthetic:gen=g,y=4,schedule=pretrain,pretrain_epochs=5")])
    assert "pretrain on them alone for 5 epochs, then fine-tune on the real images" in text
    assert "loss weight 0.3" in describe([parse_policy("variation:gen=g,schedule=weighted,w=0.3")])


def test_the_ratio_plot_draws_policies_run_at_several_amounts() -> None:
    import json

    from synthaug.report.results import ratio_curve

    rows = []
    for seed in range(3):
        for y, spec in [(0, []), (1, [{"name": "synthetic", "params": {"gen": "g", "y": 1}}]),
                        (4, [{"name": "synthetic", "params": {"gen": "g", "y": 4}}]),
                        (10, [{"name": "synthetic", "params": {"gen": "g", "y": 10}}])]:  # fmt: skip
            rows.append({"model": "cnn", "real_fraction": 0.1, "seed": seed, "n_real": 50, "n_train": 50 + 50 * y,
                         "policy": f"synthetic(gen=g,y={y})" if y else "none", "policy_spec": json.dumps(spec),
                         "test_balanced_accuracy": 0.6 + 0.01 * y + 0.005 * seed})  # fmt: skip
    df = pd.DataFrame(rows)
    assert ratio_curve(df).startswith("data:image/png;base64,")  # type: ignore[union-attr]
    assert ratio_curve(df[df["policy"].isin(["none", "synthetic(gen=g,y=1)"])]) is None  # one amount: no plot


def test_a_study_sweeping_the_ratio_shows_the_plot_in_its_report(tmp_path: Path) -> None:
    from synthaug.study.runner import run_study

    gens = "study.generators=[{family: vae, image_size: 16, steps: 3, batch_size: 8, vae: {channels: [8, 16]}}]"
    policies = ("study.policies=[[], ['synthetic:gen=vae,y=1'], ['synthetic:gen=vae,y=3'], "
                "['synthetic:gen=vae,y=3,schedule=pretrain,pretrain_epochs=1']]")  # fmt: skip
    cfg = load_config(None, ["data.size=16", "data.phantom.n=60", "study.seeds=[0, 1]", "study.real_fractions=[1.0]",
                             "study.workers=1", "train.epochs=2", "quality.enabled=false", gens, policies])  # fmt: skip
    run = run_study(cfg, tmp_path / "run")
    html = (run.root / "report.html").read_text()
    assert "against the ratio of added to real training images" in html
    assert "pretrain on them alone for 1 epochs, then fine-tune on the real images" in html
