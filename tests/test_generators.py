"""Every registered generator family, per class and conditional: fits with finite losses,
gradients reach every parameter, samples have the right shape/dtype, save/load round-trips."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from synthaug.data.imageset import ImageSet
from synthaug.generators import GENERATORS, GeneratorConfig, fit, load_generator
from synthaug.generators.base import derive_seed

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
    }
    raw.update(overrides)
    return GeneratorConfig.model_validate(raw)


def test_registry_offers_the_three_families() -> None:
    assert set(GENERATORS) == {"vae", "gan", "ddpm"}
    assert all(cls.family == name for name, cls in GENERATORS.items())


@pytest.mark.parametrize("mode", ["conditional", "per_class"])
@pytest.mark.parametrize("family", ["vae", "gan", "ddpm"])
def test_fit_sample_save_load(family: str, mode: str, tmp_path: Path) -> None:
    data = tiny_data()
    gen = fit(data, tiny_cfg(family, mode, sample_every=2), tmp_path, seed=1)
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
    trainer = GENERATORS[family].make_trainer(cfg, num_classes, torch.device("cpu"))
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
    cpu = GeneratorConfig(family="ddpm", preset="cpu").resolve()
    gpu = GeneratorConfig(family="ddpm", preset="gpu", steps=7).resolve()
    assert (cpu.image_size, cpu.ddpm.block_out_channels, cpu.ddpm.layers_per_block) == (64, (32, 64, 64), 1)
    assert gpu.image_size == 128 and gpu.steps == 7 and len(gpu.ddpm.block_out_channels or ()) == 4
    auto = GeneratorConfig(preset="auto", device="cpu").resolve()
    assert auto.preset == "cpu"
    assert GeneratorConfig(family="vae", preset="cpu").resolve().vae.latent_dim == 64


def test_bad_config_is_rejected_with_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        GeneratorConfig(image_size=20)
    with pytest.raises(ValueError, match="famly"):
        GeneratorConfig.model_validate({"famly": "gan"})
    with pytest.raises(ValueError, match="per_class mode needs"):
        data = tiny_data(6)
        fit(data.subset(np.flatnonzero(data.labels != 2)), tiny_cfg("vae", "per_class"), tmp_path)


def test_derived_seeds_are_stable_and_distinct() -> None:
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2)
    assert len({derive_seed(0, c, k) for c in range(3) for k in range(100)}) == 300
