"""``study.generator_pool: unlabelled_rest``: the rest of the training split reaches the generators
without labels (the null class of the diffusion families), never a validation or test image."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from synthaug.config import load_config
from synthaug.generators import fit
from synthaug.io import read_json
from synthaug.study.runner import run_study
from tests.test_generators import single_thread, tiny_cfg, tiny_data  # noqa: F401

DDPM = ("{family: ddpm, image_size: 16, steps: 2, batch_size: 8, sample_every: 0, "
        "ddpm: {block_out_channels: [8, 16], layers_per_block: 1, sample_steps: 2}}")  # fmt: skip
VAE = "{family: vae, image_size: 16, steps: 2, batch_size: 8, vae: {channels: [8, 16], latent_dim: 8}}"


def test_the_pool_is_the_rest_of_the_training_split_and_is_recorded(tmp_path: Path) -> None:
    cfg = load_config(None, [
        "data.size=16", "data.phantom.n=80", "study.seeds=[0, 1]", "study.real_fractions=[0.3]", "study.workers=1",
        "train.epochs=1", "quality.enabled=false", "study.generator_pool=unlabelled_rest",
        f"study.generators=[{DDPM}, {VAE}]",
        "study.policies=[[], ['synthetic:gen=ddpm,per_class=2'], ['synthetic:gen=vae,per_class=2']]",
    ])  # fmt: skip
    run = run_study(cfg, tmp_path / "run")
    splits = read_json(run.splits)
    test = set(splits["test"])
    for seed in (0, 1):
        cell = splits["cells"][str(seed)]["0.3"]
        rec = read_json(run.generator_dir("ddpm", 0.3, seed) / "trained_on.json")
        labelled, unlabelled = set(rec["ids"]), set(rec["unlabelled_ids"])
        assert labelled == set(cell["train"]) and unlabelled
        assert not unlabelled & (set(cell["val"]) | test | labelled)  # never validation, test or the labelled ones
        fit_record = read_json(run.generator_dir("ddpm", 0.3, seed) / "config.json")
        assert fit_record["unlabelled_images"] == len(unlabelled)  # and it trained on them
        vae = read_json(run.generator_dir("vae", 0.3, seed) / "trained_on.json")
        assert vae["unlabelled_ids"] == [] and set(vae["ids"]) == labelled  # no null class: labelled only


@pytest.mark.parametrize("family", ["ddpm", "ldm"])
def test_unlabelled_images_train_as_the_null_class(
    family: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from synthaug.generators import training

    seen: list[tuple[int, int | None]] = []
    real_loop = training.train_loop

    def spy(trainer, x, y, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((len(x), None if y is None else int((y == 3).sum())))
        return real_loop(trainer, x, y, *args, **kwargs)

    module = __import__(f"synthaug.generators.{'base' if family == 'ddpm' else 'ldm'}", fromlist=["train_loop"])
    monkeypatch.setattr(module, "train_loop", spy)
    labelled, extra = tiny_data(12), tiny_data(9, seed=5)
    gen = fit(labelled, tiny_cfg(family, steps=2), tmp_path, seed=0, unlabelled=extra)
    if family == "ldm":  # the autoencoder sees all 21 images, the UNet all 21 with 9 in the null class
        assert seen == [(21, None), (21, 9)]
    else:
        assert seen == [(21, 9)]
    assert gen.sample(0, 2, rng=0).shape == (2, 16, 16)
    assert read_json(tmp_path / "config.json")["unlabelled_images"] == 9


LDM = ("{family: ldm, image_size: 16, steps: 2, pool_steps: 3, batch_size: 8, sample_every: 0, "
       "ldm: {ae_channels: [8, 16], ae_steps: 3, latent_channels: 2, block_out_channels: [8, 16], "
       "layers_per_block: 1, sample_steps: 2}}")  # fmt: skip


def test_pool_pretraining_runs_once_never_sees_validation_and_each_cell_fine_tunes_it(tmp_path: Path) -> None:
    import torch

    from synthaug.generators import load_generator

    cfg = load_config(None, [
        "data.size=16", "data.phantom.n=80", "study.seeds=[0, 1]", "study.real_fractions=[0.3, 0.5]",
        "study.workers=1", "train.epochs=1", "quality.enabled=false", "study.generator_pool=unlabelled_rest",
        f"study.generators=[{LDM}]", "study.policies=[[], ['synthetic:gen=ldm,per_class=2']]",
    ])  # fmt: skip
    run = run_study(cfg, tmp_path / "run")
    pools = sorted((run.generators / "ldm").glob("pool_*"))
    assert len(pools) == 1  # one pretraining for the four cells
    splits = read_json(run.splits)
    pool = read_json(pools[0] / "trained_on.json")
    assert pool["ids"] == [] and pool["unlabelled_ids"]
    every_val = {i for by_fraction in splits["cells"].values() for c in by_fraction.values() for i in c["val"]}
    assert not set(pool["unlabelled_ids"]) & (every_val | set(splits["test"]))  # no validation or test image
    pooled = load_generator(pools[0] / "generator.pt")
    assert read_json(pools[0] / "config.json")["config"]["steps"] == 3  # pool_steps
    for seed in (0, 1):
        for fraction in (0.3, 0.5):
            out = run.generator_dir("ldm", fraction, seed)
            rec = read_json(out / "trained_on.json")
            assert rec["started_from"]["checkpoint"] == pooled.checkpoint_hash
            assert rec["unlabelled_ids"] == []  # the pool was learned once; the cell fine-tunes on its labels
            assert not set(rec["ids"]) & (set(splits["cells"][str(seed)][f"{fraction:g}"]["val"]) | set(splits["test"]))
            assert not (out / "autoencoder" / "train_state.pt").exists()  # phase 1 is the pool's
            gen: Any = load_generator(out / "generator.pt")
            mine, theirs = gen.autoencoder.state_dict(), cast(Any, pooled).autoencoder.state_dict()
            assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    # The same command again: nothing is retrained.
    before = [(p / "generator.pt").stat().st_mtime_ns for p in [pools[0], run.generator_dir("ldm", 0.3, 0)]]
    run_study(cfg, run.root)
    assert before == [(p / "generator.pt").stat().st_mtime_ns for p in [pools[0], run.generator_dir("ldm", 0.3, 0)]]


@pytest.mark.parametrize("family", ["ddpm", "ldm"])
def test_a_fit_started_from_the_pool_fine_tunes_its_weights(family: str, tmp_path: Path) -> None:
    import torch

    labelled, extra = tiny_data(12), tiny_data(9, seed=5)
    start = fit(labelled.subset(torch.arange(0).numpy()), tiny_cfg(family, steps=3), tmp_path / "pool", seed=3,
                unlabelled=extra)  # fmt: skip
    # A learning rate of ~0 leaves the UNet where the pool left it: the fit starts from its weights.
    tuned = fit(labelled, tiny_cfg(family, steps=2, lr=1e-12), tmp_path / "cell", seed=0, unlabelled=extra, start=start)
    for a, b in zip(tuned.nets["all"].state_dict().values(), start.nets["all"].state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    scratch = fit(labelled, tiny_cfg(family, steps=2, lr=1e-12), tmp_path / "scratch", seed=0, unlabelled=extra)
    mine, theirs = scratch.nets["all"].state_dict(), start.nets["all"].state_dict()
    assert any(not torch.allclose(mine[k], theirs[k]) for k in theirs)
    assert tuned.sample(1, 2, rng=0).shape == (2, 16, 16)


def test_pool_steps_are_refused_where_they_cannot_work(tmp_path: Path) -> None:
    from synthaug.config.load import ConfigError

    with pytest.raises(ValueError, match="pool_steps needs a conditional model"):
        tiny_cfg("vae", pool_steps=10)
    with pytest.raises((ValueError, ConfigError), match="generator_pool: unlabelled_rest"):
        load_config(None, [f"study.generators=[{LDM}]", "study.policies=[[], ['synthetic:gen=ldm,per_class=2']]"])
    labelled = tiny_data(6)
    ddpm = fit(labelled, tiny_cfg("ddpm", steps=1), tmp_path / "ddpm")
    with pytest.raises(ValueError, match="cannot start from a ddpm generator"):
        fit(labelled, tiny_cfg("vae"), tmp_path / "vae", start=ddpm)
