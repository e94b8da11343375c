"""The command line, run as a user would, in a temporary folder."""

import json
from pathlib import Path

from typer.testing import CliRunner

from synthaug.cli import app

runner = CliRunner()


def test_phantoms_then_audit_writes_folder_and_json(tmp_path: Path) -> None:
    out = tmp_path / "ph"
    res = runner.invoke(app, ["phantoms", str(out), "--n", "48", "--size", "32", "--imbalance", "pituitary=0.5"])
    assert res.exit_code == 0, res.output
    assert len(list((out / "Training").rglob("*.png"))) + len(list((out / "Testing").rglob("*.png"))) == 48
    assert len(list((out / "masks").rglob("*.png"))) == 48
    res = runner.invoke(app, ["audit", str(out), "--json", str(tmp_path / "audit.json"), "--size", "32"])
    assert res.exit_code == 0, res.output
    assert "glioma" in res.output and "exact" in res.output
    report = json.loads((tmp_path / "audit.json").read_text())
    assert report["images"] == 48 and report["counts"]["train"]["pituitary"] < report["counts"]["train"]["glioma"]


def test_bad_inputs_exit_with_a_clear_message(tmp_path: Path) -> None:
    res = runner.invoke(app, ["audit", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(app, ["audit", "phantom", "--set", "data.leakage.treshold=3"])
    assert res.exit_code == 2 and "unknown key" in res.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("precious")
    res = runner.invoke(app, ["phantoms", str(tmp_path / "full"), "--n", "8"])
    assert res.exit_code == 2 and "not empty" in res.output
    assert (tmp_path / "full" / "keep.txt").read_text() == "precious"
    res = runner.invoke(app, ["phantoms", str(tmp_path / "p"), "--imbalance", "pituitary"])
    assert res.exit_code == 2 and "name=weight" in res.output


GENERATOR_STUDY = """
data: {source: phantom, size: 16, phantom: {n: 48}}
study:
  generators:
    - {name: tiny-ddpm, family: ddpm, steps: 3, batch_size: 6, checkpoint_every: 2, sample_every: 0,
       ddpm: {block_out_channels: [8, 16], layers_per_block: 1, sample_steps: 4}}
"""


def test_train_generator_then_sample_a_bank_and_variations(tmp_path: Path) -> None:
    import pandas as pd

    from synthaug.data.prepare import prepare_data
    from synthaug.io import read_json

    config = tmp_path / "gen.yaml"
    config.write_text(GENERATOR_STUDY)
    gen_dir = tmp_path / "gen"
    res = runner.invoke(
        app, ["train-generator", str(gen_dir), "--config", str(config), "--generator", "tiny-ddpm", "--fraction", "0.5"]
    )
    assert res.exit_code == 0, res.output
    checkpoint = gen_dir / "generator.pt"
    assert checkpoint.exists() and (gen_dir / "loss.csv").exists()
    from synthaug.config import load_config

    data = prepare_data(load_config(config).data)
    seen = set(read_json(gen_dir / "trained_on.json")["ids"])
    assert seen < set(data.train.ids) and not seen & set(data.test.ids)  # training images only, half of them

    bank = tmp_path / "synthetic"
    args = ["sample", str(checkpoint), "--out", str(bank), "--n", "3", "--class", "glioma", "--class", "pituitary"]
    res = runner.invoke(app, [*args, "--sampler", "ddim", "--steps", "2"])
    assert res.exit_code == 0, res.output
    manifest = pd.read_parquet(bank / "ddpm" / "manifest.parquet")
    assert sorted(manifest["class_name"].unique()) == ["glioma", "pituitary"] and len(manifest) == 6
    assert (manifest["sampler"] == "ddim").all() and (manifest["steps"] == 2).all()
    assert len(list((bank / "ddpm" / "glioma").glob("*.png"))) == 3
    # A larger request continues the bank: the first images stay, no id twice.
    stamp = (bank / "ddpm" / manifest["path"].iloc[0]).stat().st_mtime_ns
    res = runner.invoke(app, [*args[:5], "5", "--class", "glioma", "--sampler", "ddim", "--steps", "2"])
    assert res.exit_code == 0, res.output
    more = pd.read_parquet(bank / "ddpm" / "manifest.parquet")
    assert len(more) == 8 and more["id"].is_unique
    assert (bank / "ddpm" / manifest["path"].iloc[0]).stat().st_mtime_ns == stamp
    # Another sampler in the same bank is refused rather than mixed in.
    res = runner.invoke(app, [*args, "--sampler", "ddpm"])
    assert res.exit_code == 2 and "other settings" in res.output

    res = runner.invoke(app, ["sample", str(checkpoint), "--out", str(bank), "--n", "2", "--variations-of", "phantom"])
    assert res.exit_code == 0, res.output
    variations = pd.read_parquet(bank / "variation" / "manifest.parquet")
    assert len(variations) == 8 and variations["source_id"].notna().all()


def test_generator_commands_reject_bad_input(tmp_path: Path) -> None:
    res = runner.invoke(app, ["sample", str(tmp_path / "none.pt")])
    assert res.exit_code == 2 and "no generator checkpoint" in res.output
    config = tmp_path / "gen.yaml"
    config.write_text(GENERATOR_STUDY)
    res = runner.invoke(app, ["train-generator", str(tmp_path / "g"), "--config", str(config), "--generator", "nope"])
    assert res.exit_code == 2 and "tiny-ddpm" in res.output
    res = runner.invoke(app, ["train-generator", str(tmp_path / "g"), "--data", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "does not exist" in res.output
