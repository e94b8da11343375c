"""Every registered generator family, per class and conditional: fits with finite losses,
gradients reach every parameter, samples have the right shape/dtype, save/load round-trips."""

from __future__ import annotations

import functools
import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from synthaug.cli import app
from synthaug.config import FAMILIES, GeneratorConfig, SynthaugConfig, parse_generator
from synthaug.data.imageset import ImageSet
from synthaug.generators import fit, generator_class, load_generator
from synthaug.generators.base import Generator, derive_seed
from tests.tiny_pipelines import tiny_pipeline

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    # Tiny convolutions on a shared 2-core machine run ~50x slower with 2 spinning threads.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny_data(n: int = 24, size: int = 16, seed: int = 0) -> ImageSet:
    """Three classes of bright discs whose radius grows with the class, on faint noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    yy, xx = np.mgrid[:size, :size]
    r = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) ** 0.5
    images = np.stack(
        [np.where(r < size * (0.15 + 0.1 * c), 200, 30) + rng.integers(0, 20, (size, size)) for c in labels]
    ).astype(np.uint8)
    ids = np.array([f"img{i:03d}" for i in range(n)], dtype=object)
    return ImageSet(images, labels.astype(np.int64), ids, ("small", "medium", "large"))


@functools.cache
def tiny_folder() -> str:
    """``tiny_data`` written as ``DIR/<class>/*.png``: the images of a ``folder`` generator."""
    root = Path(tempfile.mkdtemp(prefix="synthaug-folder-"))
    data = tiny_data(30, seed=9)
    for i, (img, c) in enumerate(zip(data.images, data.labels, strict=True)):
        (root / data.class_names[c]).mkdir(exist_ok=True)
        Image.fromarray(img).save(root / data.class_names[c] / f"s{i:03d}.png")
    return str(root)


TRAINED = [f for f in FAMILIES if f != "folder"]  # a folder generator has nothing to train or resume


def tiny_cfg(family: str = "ddpm", mode: str = "conditional", **overrides: Any) -> GeneratorConfig:
    """16 px, two-level networks with 8/16 channels, 3 steps: seconds on one CPU thread."""
    raw: dict[str, Any] = {
        "family": family,
        "mode": mode,
        "preset": "cpu",
        "device": "cpu",
        "image_size": 16,
        "steps": 3,
        "batch_size": 6,
        "checkpoint_every": 2,
        "sample_every": 0,
        "vae": {"channels": (8, 16), "latent_dim": 8},
        "gan": {"channels": (8, 16), "z_dim": 8},
        "ddpm": {"block_out_channels": (8, 16), "layers_per_block": 1, "sample_steps": 4},
        "ldm": {"ae_channels": (8, 16), "ae_steps": 3, "latent_channels": 2, "block_out_channels": (8, 16),
                "layers_per_block": 1, "sample_steps": 4},
        "folder": {"path": tiny_folder() if family == "folder" else ""},
        "pretrained": {"model": tiny_pipeline() if family == "pretrained" else "", "inference_steps": 2,
                       "guidance": 2.0, "lora": {"rank": 4}},
    }  # fmt: skip
    raw = {k: v for k, v in raw.items() if k not in FAMILIES or k == family}  # only the family's own section
    raw.update(overrides)
    return parse_generator(raw)


def test_registry_offers_every_family_with_its_implementation() -> None:
    assert {"vae", "gan", "ddpm"} <= set(FAMILIES)
    for name, cfg_cls in FAMILIES.items():
        assert issubclass(generator_class(name), Generator)
        assert cfg_cls.presets.keys() == {"cpu", "gpu"} and cfg_cls.section in cfg_cls.model_fields
    with pytest.raises(ValueError, match="unknown generator family 'nope'"):
        generator_class("nope")


def test_cli_help_and_config_schema_list_the_registered_families() -> None:
    text = CliRunner().invoke(app, ["train-generator", "--help"], terminal_width=200).output
    assert all(name in text for name in FAMILIES)
    schema = SynthaugConfig.model_json_schema()
    mapping = next(d["discriminator"]["mapping"] for d in _walk(schema) if "discriminator" in d)
    assert set(mapping) == set(FAMILIES)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@pytest.mark.parametrize("family", TRAINED)
def test_every_family_resumes_to_the_uninterrupted_result(
    family: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny_cfg(family, steps=4, checkpoint_every=2)
    reference = fit(tiny_data(), cfg, tmp_path / "reference", seed=0)
    cls = generator_class(family)
    make_trainer = cls.make_trainer

    def interrupted(config: GeneratorConfig, num_classes: int | None, device: torch.device) -> Any:
        trainer = make_trainer(config, num_classes, device)
        step, calls = trainer.step, itertools.count(1)

        def step_or_die(*args: Any, **kwargs: Any) -> Any:
            if next(calls) > 3:  # killed in step 4, after the step-2 checkpoint
                raise KeyboardInterrupt
            return step(*args, **kwargs)

        trainer.step = step_or_die
        return trainer

    monkeypatch.setattr(cls, "make_trainer", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_data(), cfg, tmp_path / "run", seed=0)
    assert not (tmp_path / "run" / "generator.pt").exists()
    monkeypatch.undo()
    resumed = fit(tiny_data(), cfg, tmp_path / "run", seed=0, resume=True)
    assert pd.read_csv(tmp_path / "run" / "loss.csv")["step"].tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(resumed.sample(1, 3, rng=5), reference.sample(1, 3, rng=5))


@pytest.mark.parametrize("mode", ["conditional", "per_class"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_fit_sample_save_load(family: str, mode: str, tmp_path: Path) -> None:
    data = tiny_data()
    if mode == "per_class" and family in ("ldm", "pretrained"):  # one conditional model: said when the config loads
        with pytest.raises(ValueError, match="mode: conditional"):
            tiny_cfg(family, mode)
        return
    gen = fit(data, tiny_cfg(family, mode, sample_every=2), tmp_path, seed=1)
    if family == "folder":  # nothing trained: the images come from the folder, seeded, at the data size
        assert gen.sample(0, 5, rng=3).shape == (5, 16, 16)
        np.testing.assert_array_equal(load_generator(tmp_path / "generator.pt").sample(1, 4, 7), gen.sample(1, 4, 7))
        assert not np.array_equal(gen.sample(1, 4, 7), gen.sample(1, 4, 8))
        return
    work = tmp_path if mode == "conditional" else tmp_path / "class_0"
    history = pd.read_csv(work / "loss.csv")
    assert history["step"].tolist() == [1, 2, 3]
    assert np.isfinite(history.drop(columns="step").to_numpy()).all()
    assert (work / "samples" / "step_000002.png").exists() and (work / "samples.png").exists()
    for c in range(data.num_classes):
        s = gen.sample(c, 5, rng=c)
        assert s.shape == (5, 16, 16) and s.dtype == np.uint8
        assert s.std() > 0  # not a constant image
    again = load_generator(tmp_path / "generator.pt")
    assert again.cfg == gen.cfg and again.class_names == data.class_names
    np.testing.assert_array_equal(again.sample(2, 4, rng=7), gen.sample(2, 4, rng=7))
    assert not np.array_equal(gen.sample(2, 4, rng=7), gen.sample(2, 4, rng=8))
    assert again.checkpoint_hash == gen.checkpoint_hash and len(gen.checkpoint_hash or "") == 16


@pytest.mark.parametrize(
    ("family", "mode", "extra"),
    [
        ("vae", "conditional", {}),
        ("vae", "per_class", {}),
        ("gan", "conditional", {}),
        (
            "gan",
            "conditional",
            {
                "gan": {
                    "channels": (8, 16),
                    "z_dim": 8,
                    "loss": "lsgan",
                    "conditioning": "embedding",
                    "spectral_norm": False,
                }
            },
        ),
        ("gan", "per_class", {}),
        ("ddpm", "conditional", {}),
        ("ddpm", "per_class", {}),
    ],
)
def test_one_step_reaches_every_parameter(family: str, mode: str, extra: dict[str, Any]) -> None:
    cfg = tiny_cfg(family, mode, **extra).resolve()
    num_classes = 3 if mode == "conditional" else None
    trainer = generator_class(family).make_trainer(cfg, num_classes, torch.device("cpu"))
    data = tiny_data(6)
    y = torch.as_tensor(data.labels) if num_classes else None
    losses = trainer.step(torch.rand(6, 1, 16, 16) * 2 - 1, y, torch.Generator().manual_seed(0))
    assert all(np.isfinite(v) for v in losses.values())
    for net_name, net in trainer.nets.items():
        for name, p in net.named_parameters():
            assert p.grad is not None, f"{family}/{net_name}: no gradient for {name}"
            assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{family}/{net_name}: zero grad {name}"


def test_samples_come_back_at_the_dataset_resolution(tmp_path: Path) -> None:
    data = tiny_data(size=32)
    gen = fit(data, tiny_cfg("vae", steps=1), tmp_path)
    assert gen.sample(0, 2, rng=0).shape == (2, 32, 32)
    with pytest.raises(ValueError, match="class_id 3"):
        gen.sample(3, 1, rng=0)


def test_presets_fill_unset_fields_and_keep_explicit_ones() -> None:
    cpu = parse_generator({"family": "ddpm", "preset": "cpu"}).resolve()
    gpu = parse_generator({"family": "ddpm", "preset": "gpu", "steps": 7}).resolve()
    assert (cpu.image_size, cpu.ddpm.block_out_channels, cpu.ddpm.layers_per_block) == (64, (32, 64, 64), 1)
    assert gpu.image_size == 128 and gpu.steps == 7 and len(gpu.ddpm.block_out_channels or ()) == 4
    auto = parse_generator({"preset": "auto", "device": "cpu"}).resolve()
    assert auto.preset == "cpu" and auto.family == "ddpm"  # an entry without family is a DDPM
    assert parse_generator({"family": "vae", "preset": "cpu"}).resolve().vae.latent_dim == 64


def test_bad_config_is_rejected_with_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        parse_generator({"family": "vae", "image_size": 20})
    with pytest.raises(ValueError, match="famly"):
        parse_generator({"family": "gan", "famly": "gan"})
    with pytest.raises(ValueError, match="ddpm"):  # another family's section is not this family's key
        parse_generator({"family": "gan", "ddpm": {"sample_steps": 4}})
    with pytest.raises(ValueError, match=r"unknown generator family 'vea'.*'vae'"):
        parse_generator({"family": "vea"})
    with pytest.raises(ValueError, match="per_class mode needs"):
        data = tiny_data(6)
        fit(data.subset(np.flatnonzero(data.labels != 2)), tiny_cfg("vae", "per_class"), tmp_path)


def test_derived_seeds_are_stable_and_distinct() -> None:
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2)
    assert len({derive_seed(0, c, k) for c in range(3) for k in range(100)}) == 300
