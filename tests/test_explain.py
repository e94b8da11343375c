"""Explain stage: Grad-CAM of the study's classifier on real test vs bank images, quantified, and its command."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from synthaug.classifiers import ModelConfig, create_model
from synthaug.classifiers.train import save_checkpoint
from synthaug.cli import app
from synthaug.config import ExplainConfig, SynthaugConfig
from synthaug.data.phantoms import generate
from synthaug.io import read_json
from synthaug.study.explain import explain_rows, load_for_cam, real_cam_figures
from tests.test_quality_stage import trust_run

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trust_run(tmp_path_factory)


def _banks(run_dir: Path) -> dict[str, dict[str, Any]]:
    (entry,) = read_json(run_dir / "explain" / "cams.json")["classifiers"]
    return {b["bank"]: b for b in entry["banks"]}


def test_cams_json_quantifies_real_and_synthetic(run_dir: Path) -> None:
    (entry,) = read_json(run_dir / "explain" / "cams.json")["classifiers"]
    names = read_json(run_dir / "audit.json")["class_names"]
    assert (entry["cell_id"], entry["model"], entry["policy"]) == ("cnn__none__f1__s0", "cnn", "none")
    real = entry["real"]
    # Phantom test images carry lesion masks; the tumour-free class has none, so it is left out of the figures.
    assert real["n"] == 3 * len(names) and real["n_with_lesion"] == 3 * (len(names) - 1)
    assert 0 <= real["energy_in_mask"] <= 1 and 0 <= real["pointing_game"] <= 1
    banks = _banks(run_dir)
    assert set(banks) == {"copies", "heldout", "vae"}
    # Variations (the copies record their sources) are measured in their source's lesion mask ...
    assert banks["copies"]["variation"] and banks["copies"]["synthetic"]["n_with_lesion"] == real["n_with_lesion"]
    assert 0 <= banks["copies"]["synthetic"]["energy_in_mask"] <= 1
    # ... plain samples have no mask: the mean-CAM similarity per class says where the classifier looks instead.
    assert banks["vae"]["synthetic"]["energy_in_mask"] is None
    assert set(banks["vae"]["mean_cam_correlation"]) == set(names)
    # The held-out bank holds the very test images explained as real ones: identical mean CAMs.
    assert all(abs(r - 1) < 1e-6 for r in banks["heldout"]["mean_cam_correlation"].values())


def test_panels_are_images(run_dir: Path) -> None:
    for bank in _banks(run_dir).values():
        with Image.open(run_dir / bank["panel"]) as png:
            assert png.format == "PNG" and png.size[0] > png.size[1] > 0


def test_explain_command(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "explain")
    res = CliRunner().invoke(app, ["explain", str(copy), "--set", "study.device=cpu"])
    assert res.exit_code == 0, res.output
    assert "cams.json" in res.output and len(_banks(copy)) == 3
    assert all((copy / b["panel"]).exists() for b in _banks(copy).values())
    res = CliRunner().invoke(app, ["explain", str(tmp_path / "not-a-run")])
    assert res.exit_code == 2 and "synthaug run" in res.output


def _results() -> pd.DataFrame:
    rows = [
        (model, policy, frac, seed)
        for model in ("cnn", "vit")
        for policy in ("none", "synthetic(gen=ddpm,y=1)")
        for frac in (0.5, 1.0)
        for seed in (0, 1)
    ]
    df = pd.DataFrame(rows, columns=["model", "policy", "real_fraction", "seed"])
    df["cell_id"] = [f"{m}__{p}__f{f:g}__s{s}" for m, p, f, s in rows]
    return df


def test_explain_picks_one_classifier_per_model_and_policy() -> None:
    cfg = SynthaugConfig.model_validate({"study": {"seeds": [1, 0]}})
    picked = explain_rows(_results(), cfg, ExplainConfig())
    assert picked["cell_id"].tolist() == ["cnn__none__f1__s1", "vit__none__f1__s1"]  # baseline, top fraction, seed 1
    both = explain_rows(_results(), cfg, ExplainConfig(policies=["none", "synthetic(gen=ddpm,y=1)"]))
    assert len(both) == 4 and set(both["real_fraction"]) == {1.0}
    fallback = explain_rows(_results(), cfg, ExplainConfig(policies=["autoaugment"]))  # no such cell: first policy
    assert fallback["policy"].tolist() == ["none", "none"]


def test_a_frozen_backbone_is_explained_too(tmp_path: Path) -> None:
    mcfg = ModelConfig.model_validate({"name": "resnet18", "resnet18": {"mode": "frozen"}})
    torch.manual_seed(0)
    model = create_model("resnet18", 4, 64, pretrained=False, **mcfg.options())  # 64 px: layer4 maps are 2x2
    assert not all(p.requires_grad for p in model.parameters())  # only the head trains
    meta = {"model_config": mcfg.model_dump(mode="json"), "num_classes": 4, "image_size": 64}
    save_checkpoint(tmp_path / "best.pt", model.state_dict(), meta)
    loaded, _ = load_for_cam(tmp_path / "best.pt", torch.device("cpu"))
    figures = real_cam_figures(loaded, generate(8, 64, seed=1), tolerance=2)
    assert figures["n"] == 8 and figures["n_with_lesion"] > 0
    assert 0 < figures["energy_in_mask"] < 1 and 0 <= figures["pointing_game"] <= 1
