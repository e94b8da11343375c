"""The ``pretrained`` family on tiny random-weight diffusers pipelines the tests build themselves:
text-to-image, img2img / image-variation / unCLIP variations, LoRA fine-tuning and its resume, what
the bank records, the one-channel round trip, and the fast offline failure."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from synthaug.config import load_config, parse_generator
from synthaug.generators import fit, load_generator, make_variations, write_bank
from synthaug.generators.pipelines import folder_fingerprint, to_pil
from synthaug.generators.pretrained import from_pipeline
from tests.test_generators import tiny_data
from tests.tiny_pipelines import tiny_pipeline


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def cfg(kind: str = "text2img", rank: int = 0, lr: float = 1e-4, **pretrained: Any) -> Any:
    return parse_generator({
        "family": "pretrained", "device": "cpu", "image_size": 16, "steps": 4, "batch_size": 4, "lr": lr,
        "checkpoint_every": 2, "sample_every": 0,
        "pretrained": {"model": tiny_pipeline(kind), "pipeline": kind, "inference_steps": 3, "guidance": 2.0,
                       "prompt": "a scan showing {class}", "lora": {"rank": rank}, **pretrained},
    })  # fmt: skip


def rngs(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_text_to_image_is_seeded_per_image_and_recorded_in_the_bank(tmp_path: Path) -> None:
    gen = fit(tiny_data(), cfg(), tmp_path / "gen", seed=0)
    one = gen.sample(1, 3, rngs(0, 1, 2))
    assert one.shape == (3, 16, 16) and one.dtype == np.uint8 and one.std() > 0
    np.testing.assert_array_equal(gen.sample(1, 1, rngs(2))[0], one[2])  # image k is the same in any batch
    assert not np.array_equal(one[0], one[1])
    a = write_bank(gen, tmp_path / "a", {0: 3, 2: 2}, seed=4, batch_size=2)
    again = load_generator(tmp_path / "gen" / "generator.pt")
    write_bank(again, tmp_path / "b", {0: 3, 2: 2}, seed=4, batch_size=5)
    for p in a["path"]:
        assert (tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes()
    row = a.iloc[0]
    assert row["model"] == tiny_pipeline() and row["model_revision"] == folder_fingerprint(Path(tiny_pipeline()))
    assert (row["pipeline"], row["prompt"], row["steps"], row["guidance"]) == (
        "text2img",
        "a scan showing small",
        3,
        2.0,
    )
    assert row["sampler"] == "model" and row["seed"] == 4 and pd.isna(row["strength"])


def test_img2img_variations_end_points_and_source_dependence(tmp_path: Path) -> None:
    gen = fit(tiny_data(), cfg(), tmp_path, seed=0)
    x0 = torch.rand(2, 1, 16, 16) * 2 - 1
    other = -x0
    label = torch.zeros(2, dtype=torch.long)
    opts = gen.options(None, None, None)
    at0 = gen.vary(None, label, x0, 0.0, rngs(0, 1), opts)  # type: ignore[arg-type]
    torch.testing.assert_close(at0, gen.reconstruct(x0))  # strength 0: the autoencoder round trip only
    at1 = gen.vary(None, label, x0, 1.0, rngs(0, 1), opts)  # type: ignore[arg-type]
    torch.testing.assert_close(at1, gen.vary(None, label, other, 1.0, rngs(0, 1), opts))  # type: ignore[arg-type]
    half = gen.vary(None, label, x0, 0.5, rngs(0, 1), opts)  # type: ignore[arg-type]
    assert not torch.allclose(half, gen.vary(None, label, other, 0.5, rngs(0, 1), opts))  # type: ignore[arg-type]
    data = tiny_data()
    manifest = write_bank(gen, tmp_path / "bank", {0: 4}, seed=1, sources=data, strength=0.5)
    assert set(manifest["source_id"]) <= set(data.ids) and manifest["strength"].eq(0.5).all()
    assert manifest["prompt"].eq("a scan showing small").all()


@pytest.mark.parametrize("kind", ["image_variation", "unclip"])
def test_image_variation_and_unclip_pipelines_make_variations_only(kind: str, tmp_path: Path) -> None:
    gen = fit(tiny_data(), cfg(kind), tmp_path, seed=0)
    data = tiny_data()
    v = make_variations(gen, data.images[:3], 0, 0.5, rngs(0, 1, 2))
    assert v.shape == (3, 16, 16) and v.std() > 0
    np.testing.assert_array_equal(make_variations(gen, data.images[2:3], 0, 0.5, rngs(2))[0], v[2])
    manifest = write_bank(gen, tmp_path / "bank", {1: 2}, seed=0, sources=data)
    assert manifest["pipeline"].eq(kind).all()
    assert manifest["strength"].isna().all() if kind == "image_variation" else manifest["strength"].eq(0.5).all()
    with pytest.raises(ValueError, match="only makes variations"):
        gen.sample(0, 1, rngs(0))
    policies = "study.policies=[[], ['synthetic:gen=sd,per_class=2']]"
    generators = f"study.generators=[{{family: pretrained, name: sd, pretrained: {{model: /m, pipeline: {kind}}}}}]"
    with pytest.raises(Exception, match="only makes variations of real images"):
        load_config(None, [generators, policies])


@pytest.mark.parametrize("kind", ["text2img", "image_variation"])
def test_lora_fine_tuning_changes_the_output_and_resumes(kind: str, tmp_path: Path) -> None:
    data = tiny_data()
    plain = fit(data, cfg(kind), tmp_path / "plain", seed=0)
    tuned = fit(data, cfg(kind, rank=4, lr=1e-2), tmp_path / "tuned", seed=0)
    history = pd.read_csv(tmp_path / "tuned" / "loss.csv")
    assert history["step"].tolist() == [1, 2, 3, 4] and np.isfinite(history["loss"]).all()
    assert (tmp_path / "tuned" / "samples.png").exists()
    assert (tmp_path / "tuned" / "lora" / "pytorch_lora_weights.safetensors").exists()
    ckpt = (tmp_path / "tuned" / "generator.pt").stat().st_size
    assert ckpt < 200_000  # the LoRA and the model reference, not the pipeline
    x = data.images[:2]
    tuned_v = make_variations(tuned, x, 0, 0.6, rngs(0, 1))
    assert not np.array_equal(tuned_v, make_variations(plain, x, 0, 0.6, rngs(0, 1)))
    again = load_generator(tmp_path / "tuned" / "generator.pt")
    np.testing.assert_array_equal(make_variations(again, x, 0, 0.6, rngs(0, 1)), tuned_v)
    if kind == "text2img":  # the prompt carries the class's rare token once fine-tuned
        assert again.provenance(2)["prompt"] == "a scan showing sks2 large"


def test_the_saved_lora_loads_with_diffusers_own_loader(tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    tuned = fit(tiny_data(), cfg(rank=4, lr=1e-2), tmp_path, seed=0)
    pipe = StableDiffusionPipeline.from_pretrained(tiny_pipeline(), safety_checker=None)
    pipe.load_lora_weights(tmp_path / "lora")
    pipe.set_progress_bar_config(disable=True)
    prompt = tuned.provenance(1)["prompt"]
    out = pipe([prompt], height=16, width=16, num_inference_steps=3, guidance_scale=2.0, generator=rngs(7),
               output_type="pt").images  # fmt: skip
    ours = tuned.generate(None, torch.tensor([1]), 1, rngs(7), tuned.options(None, None, None))  # type: ignore[arg-type]
    torch.testing.assert_close(from_pipeline(out, 16), ours)


def test_one_channel_images_go_in_as_three_equal_channels_and_come_back_averaged() -> None:
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    rgb = [np.asarray(im) for im in to_pil(x)]
    assert all(a.shape == (8, 8, 3) and (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all() for a in rgb)
    out = torch.stack([torch.zeros(8, 8), torch.ones(8, 8) * 0.5, torch.ones(8, 8)])[None]  # (1, 3, 8, 8)
    torch.testing.assert_close(from_pipeline(out, 4), torch.zeros(1, 1, 4, 4))  # mean 0.5 -> 0 in [-1, 1]


def test_a_model_that_is_not_cached_fails_fast_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    bad = parse_generator({"family": "pretrained", "name": "sd", "device": "cpu",
                           "pretrained": {"model": "synthaug-tests/no-such-model"}})  # fmt: skip
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=r"generator 'sd': pretrained\.model = 'synthaug-tests/no-such-model'.*"
                                              r"unreachable.*set pretrained\.model to DIR"):  # fmt: skip
        fit(tiny_data(), bad, tmp_path, seed=0)
    assert time.monotonic() - start < 30
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConnectionError, match="HF_HUB_OFFLINE is set"):
        fit(tiny_data(), bad, tmp_path, seed=0)
    missing = bad.model_copy(update={"pretrained": bad.pretrained.model_copy(update={"model": str(tmp_path / "nope")})})
    with pytest.raises(FileNotFoundError, match="is not a diffusers pipeline folder"):
        fit(tiny_data(), missing, tmp_path, seed=0)


def test_a_changed_local_model_or_unknown_class_prompt_is_refused(tmp_path: Path) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_pipeline(), model)
    gen_cfg = cfg(model=str(model))
    fit(tiny_data(), gen_cfg, tmp_path / "gen", seed=0)
    (model / "scheduler" / "scheduler_config.json").write_text(
        (model / "scheduler" / "scheduler_config.json").read_text().replace("0.012", "0.013")
    )
    with pytest.raises(ValueError, match="is not the model this generator was made with"):
        load_generator(tmp_path / "gen" / "generator.pt")
    with pytest.raises(ValueError, match=r"prompts names classes the data does not have: \['tiny'\]"):
        fit(tiny_data(), cfg(prompts={"tiny": "x"}), tmp_path / "gen2", seed=0)


def test_a_study_with_a_pretrained_generator_names_a_missing_extra_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from synthaug.config import ConfigError
    from synthaug.study import cluster
    from synthaug.study.runner import run_study

    gens = f"study.generators=[{{family: pretrained, name: sd, pretrained: {{model: '{tiny_pipeline()}'}}}}]"
    config = load_config(None, ["data.size=16", "data.phantom.n=40", gens,
                                "study.policies=[[], ['synthetic:gen=sd,per_class=2']]"])  # fmt: skip
    real = cluster.importlib.util.find_spec
    monkeypatch.setattr(cluster.importlib.util, "find_spec", lambda name: None if name == "peft" else real(name))
    with pytest.raises(ConfigError, match=r"generator 'sd' \(family pretrained\) needs peft.*synthaug\[hf\]"):
        run_study(config, tmp_path / "run")
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_a_sampler_of_ours_replaces_the_models_own_for_that_call_only(tmp_path: Path) -> None:
    gen = fit(tiny_data(), cfg(), tmp_path, seed=0)
    own = gen.sample(0, 2, rngs(0, 1))
    ours = gen.sample(0, 2, rngs(0, 1), sampler="dpm++", steps=3)
    assert not np.array_equal(own, ours)
    np.testing.assert_array_equal(gen.sample(0, 2, rngs(0, 1)), own)  # the model's scheduler is back
    x = tiny_data().images[:2]
    v_own = make_variations(gen, x, 0, 0.5, rngs(0, 1))
    assert not np.array_equal(make_variations(gen, x, 0, 0.5, rngs(0, 1), sampler="ddim", steps=4), v_own)
    np.testing.assert_array_equal(make_variations(gen, x, 0, 0.5, rngs(0, 1)), v_own)
