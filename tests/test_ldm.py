"""Latent diffusion: both phases resume, variations at their end points, one network call per step
without guidance, byte-identical banks, and the bad inputs named."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from synthaug import device
from synthaug.generators import fit, load_generator, write_bank
from synthaug.generators.base import to_float
from synthaug.generators.ldm import AUTOENCODER, AutoencoderTrainer, LDMGenerator
from synthaug.generators.training import NonFiniteLossError
from synthaug.io import save_torch
from tests.test_generators import tiny_cfg, tiny_data


def _cfg(**overrides: Any):
    ldm = {"ae_channels": (8, 16), "ae_steps": 4, "latent_channels": 2, "block_out_channels": (8, 16),
           "layers_per_block": 1, "sample_steps": 4}  # fmt: skip
    return tiny_cfg("ldm", steps=4, checkpoint_every=2, ldm=ldm | overrides.pop("ldm", {}), **overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[LDMGenerator, Path]:
    out = tmp_path_factory.mktemp("ldm")
    gen = fit(tiny_data(), _cfg(), out, seed=0)
    assert isinstance(gen, LDMGenerator)
    return gen, out


def test_both_phases_leave_their_records(trained: tuple[LDMGenerator, Path]) -> None:
    gen, out = trained
    assert (out / AUTOENCODER / "loss.csv").exists() and (out / AUTOENCODER / "samples.png").exists()
    assert (out / "loss.csv").exists() and (out / "samples.png").exists() and (out / "generator.pt").exists()
    scale = float(gen.autoencoder.scale)
    with torch.no_grad():
        z = gen.autoencoder.encode(to_float(tiny_data().images))
    assert scale > 0 and float(z.std()) == pytest.approx(1.0, rel=1e-3)  # latents scaled to unit variance


def test_resume_from_an_interruption_in_the_autoencoder_phase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained: tuple[LDMGenerator, Path]
) -> None:
    reference, _ = trained
    step, calls = AutoencoderTrainer.step, itertools.count(1)

    def step_or_die(self: AutoencoderTrainer, *args: Any) -> Any:
        if next(calls) > 3:  # killed in autoencoder step 4, after its step-2 checkpoint
            raise KeyboardInterrupt
        return step(self, *args)

    monkeypatch.setattr(AutoencoderTrainer, "step", step_or_die)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_data(), _cfg(), tmp_path, seed=0)
    assert (tmp_path / AUTOENCODER / "train_state.pt").exists() and not (tmp_path / "loss.csv").exists()
    monkeypatch.undo()
    resumed = fit(tiny_data(), _cfg(), tmp_path, seed=0, resume=True)
    np.testing.assert_array_equal(resumed.sample(1, 3, rng=5), reference.sample(1, 3, rng=5))


def test_variation_end_points(trained: tuple[LDMGenerator, Path]) -> None:
    gen, _ = trained
    x0 = to_float(tiny_data(6).images)  # (6, 1, 16, 16)
    labels = torch.zeros(6, dtype=torch.long)
    opts = gen.options(None, None, None)
    with torch.no_grad():
        recon = gen.autoencoder.decode(gen.autoencoder.encode(x0)).clamp(-1, 1)
        same = gen.vary(gen.nets["all"], labels, x0, 0.0, torch.Generator().manual_seed(0), opts)
        torch.testing.assert_close(same, recon)  # strength 0: the source up to the autoencoder's error
        other = -x0.flip(-1)
        a = gen.vary(gen.nets["all"], labels, x0, 1.0, torch.Generator().manual_seed(0), opts)
        b = gen.vary(gen.nets["all"], labels, other, 1.0, torch.Generator().manual_seed(0), opts)
        torch.testing.assert_close(a, b)  # strength 1: nothing of the source is left
        with pytest.raises(ValueError, match="trained at 16 px"):
            gen.vary(gen.nets["all"], labels, torch.zeros(6, 1, 32, 32), 0.5, torch.Generator(), opts)


def test_guidance_one_is_one_network_call_per_step(trained: tuple[LDMGenerator, Path]) -> None:
    gen, _ = trained
    calls: list[int] = []
    hook = gen.nets["all"].register_forward_hook(lambda m, args, out: calls.append(len(args[0])))
    try:
        gen.sample(0, 3, rng=1, sampler="ddim", steps=4, guidance=1.0)
        assert calls == [3, 3, 3, 3]
        calls.clear()
        gen.sample(0, 3, rng=1, sampler="ddim", steps=4, guidance=2.0)
        assert calls == [6, 6, 6, 6]  # conditional and unconditional in one batch
    finally:
        hook.remove()


def test_same_seed_gives_a_byte_identical_bank(trained: tuple[LDMGenerator, Path], tmp_path: Path) -> None:
    gen, _ = trained
    for out in ("a", "b"):
        write_bank(gen, tmp_path / out, {0: 3, 2: 2}, seed=4, batch_size=2)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 5
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_a_checkpoint_without_its_autoencoder_or_of_another_size_is_named(
    trained: tuple[LDMGenerator, Path], tmp_path: Path
) -> None:
    _, out = trained
    state = torch.load(out / "generator.pt", weights_only=True)
    del state["nets"][AUTOENCODER]
    save_torch(tmp_path / "no_ae.pt", state)
    with pytest.raises(ValueError, match=r"no_ae\.pt.*autoencoder"):
        load_generator(tmp_path / "no_ae.pt")
    state = torch.load(out / "generator.pt", weights_only=True)
    state["nets"][AUTOENCODER]["image_size"] = torch.tensor(32)
    save_torch(tmp_path / "other_size.pt", state)
    with pytest.raises(ValueError, match=r"other_size\.pt.*trained at 32 px"):
        load_generator(tmp_path / "other_size.pt")


@pytest.mark.parametrize("phase", ["autoencoder", "unet"])
def test_a_non_finite_loss_stops_and_keeps_finished_phases(
    phase: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if phase == "autoencoder":
        step = AutoencoderTrainer.step
        monkeypatch.setattr(AutoencoderTrainer, "step", lambda self, *a: step(self, *a) | {"loss": float("nan")})
    else:
        from synthaug.generators.ddpm import DDPMTrainer

        step = DDPMTrainer.step
        monkeypatch.setattr(DDPMTrainer, "step", lambda self, *a: step(self, *a) | {"loss": float("inf")})
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 1"):
        fit(tiny_data(), _cfg(), tmp_path, seed=0)
    if phase == "unet":  # the finished autoencoder phase is kept, and not trained again on resume
        ckpt = tmp_path / AUTOENCODER / "train_state.pt"
        assert ckpt.exists()
        stamp = ckpt.stat().st_mtime_ns
        monkeypatch.undo()
        fit(tiny_data(), _cfg(), tmp_path, seed=0, resume=True)
        assert ckpt.stat().st_mtime_ns == stamp


def test_cpu_bf16_autocasts_and_stays_deterministic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained: tuple[LDMGenerator, Path]
) -> None:
    reference, _ = trained
    dtypes: set[torch.dtype] = set()
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)  # the arithmetic, on any CPU (tiny nets)
    forward = torch.nn.Conv2d.forward

    def spy(self: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        out = forward(self, x)
        dtypes.add(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "forward", spy)
    a = fit(tiny_data(), _cfg(ldm={"cpu_bf16": True}), tmp_path / "a", seed=0)
    assert torch.bfloat16 in dtypes  # the autocast reached the convolutions
    monkeypatch.setattr(torch.nn.Conv2d, "forward", forward)
    b = fit(tiny_data(), _cfg(ldm={"cpu_bf16": True}), tmp_path / "b", seed=0)
    x = a.sample(1, 3, rng=5)
    np.testing.assert_array_equal(x, b.sample(1, 3, rng=5))  # same seed, same bf16 generator
    assert np.isfinite(x).all() and not np.array_equal(x, reference.sample(1, 3, rng=5))  # fp32 differs
