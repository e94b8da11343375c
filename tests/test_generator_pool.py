"""``study.generator_pool: unlabelled_rest``: the rest of the training split reaches the generators
without labels (the null class of the diffusion families), never a validation or test image."""

from __future__ import annotations

from pathlib import Path

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
