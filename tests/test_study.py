"""The study runner writes a run directory, resumes, and refuses to mix studies."""

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from synthaug import device
from synthaug.cli import app
from synthaug.config import ConfigError, load_config
from synthaug.io import read_json
from synthaug.study.runner import run_study

SMALL = ["data.size=32", "data.phantom.n=80", "study.seeds=[0,1]", "study.real_fractions=[0.5,1.0]"]


def test_run_writes_config_audit_and_paired_splits(tmp_path: Path) -> None:
    run = run_study(load_config(None, SMALL), tmp_path / "run")
    assert load_config(run.config) == load_config(None, SMALL)
    audit = read_json(run.audit)
    assert audit["images"] == 80 and "leakage_filter" in audit
    splits = read_json(run.splits)
    test = set(splits["test"])
    for seed in ("0", "1"):
        half, full = splits["cells"][seed]["0.5"], splits["cells"][seed]["1"]
        assert not (set(half["train"]) | set(half["val"])) & test  # no test image in training or validation
        assert not set(half["train"]) & set(half["val"])
        assert set(half["train"]) | set(half["val"]) <= set(full["train"]) | set(full["val"])
    assert splits["cells"]["0"]["1"] != splits["cells"]["1"]["1"]


def test_resume_skips_complete_stages_and_force_reruns(tmp_path: Path) -> None:
    cfg = load_config(None, SMALL)
    run = run_study(cfg, tmp_path / "run")
    stamp = run.splits.stat().st_mtime_ns
    run_study(cfg, tmp_path / "run")
    assert run.splits.stat().st_mtime_ns == stamp
    run_study(cfg, tmp_path / "run", force={"splits"})
    assert run.splits.stat().st_mtime_ns != stamp
    with pytest.raises(ValueError, match="unknown stage"):
        run_study(cfg, tmp_path / "run", force={"nope"})


def test_a_different_config_never_overwrites_a_run(tmp_path: Path) -> None:
    run_study(load_config(None, SMALL), tmp_path / "run")
    with pytest.raises(ConfigError, match="different configuration"):
        run_study(load_config(None, [*SMALL, "data.size=48"]), tmp_path / "run")


def test_resume_may_change_workers_and_threads(tmp_path: Path) -> None:
    """Execution settings change speed, not results: a run resumes with other ones and skips its cells."""
    run = run_study(load_config(None, SMALL), tmp_path / "run")
    before = pd.read_parquet(run.root / "results.parquet")
    run_study(load_config(None, [*SMALL, "study.workers=2", "train.threads=1"]), tmp_path / "run")
    after = pd.read_parquet(run.root / "results.parquet")
    key = ["cell_id"]  # no cell re-ran: the same rows, wall times included
    pd.testing.assert_frame_equal(
        after.sort_values(key).reset_index(drop=True), before.sort_values(key).reset_index(drop=True)
    )


TINY_GENERATORS = (
    "study.generators=["
    "{family: vae, steps: 2, batch_size: 8, vae: {channels: [8, 16], latent_dim: 8}},"
    "{family: gan, steps: 2, batch_size: 8, gan: {channels: [8, 16], z_dim: 8}},"
    "{family: ddpm, steps: 2, batch_size: 8, ddpm: {block_out_channels: [8, 16], sample_steps: 2}}]"
)


def test_cli_run_with_quickstart_config(tmp_path: Path) -> None:
    """The quickstart's stages end to end, with its networks and budgets shrunk to seconds."""
    config = Path(__file__).parents[1] / "configs" / "quickstart.yaml"
    small = ["data.size=16", "data.phantom.n=64", "study.seeds=[0]", "study.real_fractions=[1.0]"]
    small += [TINY_GENERATORS, "train.epochs=1", "quality.epochs=1", "quality.explain.per_class=1"]
    res = CliRunner().invoke(
        app, ["run", str(config), "--out", str(tmp_path / "q"), *[a for s in small for a in ("--set", s)]]
    )
    assert res.exit_code == 0, res.output
    run = tmp_path / "q"
    assert (run / "splits.json").exists() and (run / "environment.yaml").exists()
    assert len(pd.read_parquet(run / "results.parquet")) == 6  # every policy of the quickstart, one cell each
    assert (run / "quality.json").exists() and (run / "explain" / "cams.json").exists()
    env = yaml.safe_load((run / "environment.yaml").read_text())  # which kind of CPU made the cells
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["cpu_bf16_native"] == str(device.cpu_has_native_bf16()).lower()
    html = (run / "report.html").read_text()
    assert all(t in html for t in ("Synthetic image quality", "Memorization", "Grad-CAM", "Train on synthetic"))
    assert "cpu_capability" in html


def _tiny_generators(mode: str, families: tuple[str, ...]) -> str:
    """The config's generator families in its mode, with networks and budgets shrunk to seconds."""
    nets = {
        "vae": "vae: {channels: [8, 16], latent_dim: 8}",
        "gan": "gan: {channels: [8, 16], z_dim: 8, loss: lsgan}",
        "ddpm": "ddpm: {block_out_channels: [8, 16], sample_steps: 2}",
        "ldm": "ldm: {ae_channels: [8, 16], ae_steps: 2, latent_channels: 2, block_out_channels: [8, 16], "
        "sample_steps: 2}",
    }
    common = f"mode: {mode}, image_size: 16, steps: 2, batch_size: 8"
    return "study.generators=[" + ",".join(f"{{family: {f}, {common}, {nets[f]}}}" for f in families) + "]"


@pytest.mark.parametrize(
    ("name", "models", "generators"),
    [
        # the report's protocol: frozen ImageNet ResNet-18 (a local weights file) and from scratch, per-class generators
        (
            "brain-tumor",
            "[{name: resnet18, resnet18: {mode: frozen, weights_path: WEIGHTS}}, {name: resnet18}]",
            _tiny_generators("per_class", ("ddpm", "vae", "gan")),
        ),
        # the thesis's: CNN / ResNet-18 / ViT with variations of real images from a conditional DDPM
        ("alzheimer", "[{name: cnn}, {name: resnet18}, {name: vit}]", _tiny_generators("conditional", ("ddpm",))),
        # latent diffusion's bank through quality and the grid
        ("brain-tumor-ldm", "[{name: cnn}]", _tiny_generators("conditional", ("ldm",))),
    ],
    ids=["brain-tumor", "alzheimer", "brain-tumor-ldm"],
)
def test_seed_study_configs_run_end_to_end(tmp_path: Path, name: str, models: str, generators: str) -> None:
    """The seed studies' configs (and the latent diffusion one) on phantoms: every policy, shrunk budgets."""
    import torch
    import torchvision

    weights = tmp_path / "resnet18.pth"  # stands in for torchvision's download (no network in tests)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    config = Path(__file__).parents[1] / "configs" / f"{name}.yaml"
    small = ["data.size=16", "data.phantom.n=64", "study.seeds=[0]", "study.real_fractions=[0.5]", generators]
    small += [f"study.models={models.replace('WEIGHTS', str(weights))}", "train.epochs=1", "quality.epochs=1"]
    small += ["quality.explain.per_class=1", "study.bank.steps=2"]
    args = ["run", str(config), "--data", "phantom", "--out", str(tmp_path / "run")]
    res = CliRunner().invoke(app, [*args, *[a for s in small for a in ("--set", s)]])
    assert res.exit_code == 0, res.output
    cfg = load_config(config)
    results = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert len(results) == len(cfg.study.policies) * len(cfg.study.models)  # every cell of the grid, one seed
    assert results["test_accuracy"].notna().all()
    assert "Approaches and findings" in (tmp_path / "run" / "report.html").read_text()
