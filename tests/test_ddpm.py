"""Diffusion schedule values, sampler agreement, guidance, per-image seeding and variations."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from synthaug.generators import make_variations
from synthaug.generators.ddpm import DDPMGenerator
from synthaug.generators.samplers import count_evaluations, denoise, make_scheduler, train_scheduler
from synthaug.generators.vae import VAEGenerator
from tests.test_generators import single_thread, tiny_cfg, tiny_data  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def untrained(mode: str = "conditional", data_size: int = 16) -> DDPMGenerator:
    """A freshly initialised tiny DDPM (EMA weights = init), no training needed for these checks."""
    cfg = tiny_cfg("ddpm", mode).resolve()
    torch.manual_seed(0)
    if mode == "conditional":
        nets = {"all": DDPMGenerator.build_net(cfg, 3)}
    else:
        nets = {str(c): DDPMGenerator.build_net(cfg, None) for c in range(3)}
    return DDPMGenerator(cfg, ("small", "medium", "large"), data_size, nets)


def test_linear_schedule_known_values() -> None:
    abar = train_scheduler().alphas_cumprod.double()
    assert abar[0].item() == pytest.approx(1 - 1e-4, rel=1e-6)
    expected = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))[-1]
    assert abar[999].item() == pytest.approx(expected, rel=1e-4)
    assert abar[999].item() == pytest.approx(4.0358e-5, rel=1e-3)


@pytest.mark.parametrize(
    ("name", "steps", "nfe"), [("ddpm", 1000, 1000), ("ddim", 50, 50), ("dpm++", 20, 20), ("dpm++sde", 20, 20)]
)
def test_samplers_count_denoiser_evaluations(name: str, steps: int, nfe: int) -> None:
    eps_fn, calls = count_evaluations(lambda x, t: torch.zeros_like(x))
    sched = make_scheduler(name, train_scheduler().config)
    denoise(eps_fn, sched, torch.randn(2, 1, 4, 4), steps, torch.Generator().manual_seed(0))
    assert calls[0] == nfe


def test_ddim_and_dpm_solver_agree_on_a_zero_noise_model() -> None:
    # eps = 0 means x0_hat = x_t / sqrt(abar_t) at every step; both deterministic solvers must
    # return x_T / sqrt(abar_999) (both start at t = 999 with trailing spacing, no clipping).
    x_t = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    abar = train_scheduler().alphas_cumprod
    expected = x_t / abar[999].sqrt()
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    cfg = train_scheduler().config
    ddim = denoise(zero, make_scheduler("ddim", cfg, clip_sample=False), x_t.clone(), 10, torch.Generator())
    dpm = denoise(zero, make_scheduler("dpm++", cfg, clip_sample=False), x_t.clone(), 10, torch.Generator())
    torch.testing.assert_close(ddim, expected, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(dpm, ddim, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", ["ddpm", "ddim", "dpm++", "dpm++sde"])
def test_every_sampler_lands_on_the_only_image_an_oracle_denoiser_knows(name: str) -> None:
    # Data = one image x0: the exact noise prediction is eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t).
    # Every sampler, stochastic or not, must then end at x0 (up to float error).
    x0 = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 1.6 - 0.8
    abar = train_scheduler().alphas_cumprod

    def oracle(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = abar[int(t)]
        return (x - a.sqrt() * x0) / (1 - a).sqrt()

    sched = make_scheduler(name, train_scheduler().config, clip_sample=False)
    x_t = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    out = denoise(oracle, sched, x_t, 1000 if name == "ddpm" else 10, torch.Generator().manual_seed(4))
    torch.testing.assert_close(out, x0, rtol=0, atol=2e-3)


def test_stochastic_solver_draws_fresh_noise_from_the_seed() -> None:
    gen = untrained()
    a = gen.sample(0, 2, rng=5, sampler="dpm++sde", steps=4)
    assert np.array_equal(a, gen.sample(0, 2, rng=5, sampler="dpm++sde", steps=4))
    # the same seed gives both solvers the same x_T; only the SDE adds noise along the path
    assert not np.array_equal(a, gen.sample(0, 2, rng=5, sampler="dpm++", steps=4))


def test_guidance_changes_conditional_samples_only() -> None:
    gen = untrained()
    plain = gen.sample(1, 2, rng=3, sampler="ddim", steps=5, guidance=1.0)
    guided = gen.sample(1, 2, rng=3, sampler="ddim", steps=5, guidance=4.0)
    assert not np.array_equal(plain, guided)
    assert gen.options("ddim", 5, 4.0).guidance == 4.0
    assert untrained("per_class").options("ddim", 5, 4.0).guidance is None
    assert gen.options(None, None, None) == type(gen.options(None, None, None))("dpm++sde", 4, 1.5)
    assert gen.options("ddpm", None, None).steps == 1000


def test_unconditional_null_class_is_an_extra_embedding() -> None:
    gen = untrained()
    unet: Any = gen.nets["all"]
    assert unet.config.num_class_embeds == 4  # 3 classes + null


def test_each_image_has_its_own_seed_whatever_the_batch() -> None:
    gen = untrained()
    rngs = lambda: [torch.Generator().manual_seed(s) for s in (10, 11, 12)]  # noqa: E731
    batch = gen.sample(0, 3, rng=rngs(), sampler="ddpm", steps=6)
    alone = gen.sample(0, 1, rng=[rngs()[1]], sampler="ddpm", steps=6)
    assert np.abs(batch[1].astype(int) - alone[0].astype(int)).max() <= 1


def test_unknown_sampler_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        untrained().sample(0, 1, rng=0, sampler="euler")


def test_variations_stay_close_at_low_strength() -> None:
    gen = untrained(data_size=16)
    src = tiny_data(3).images  # (3, 16, 16), all classes but fine for the check
    np.testing.assert_array_equal(make_variations(gen, src, 0, 0.0, rng=0, sampler="ddim", steps=20), src)
    near = make_variations(gen, src, 0, 0.05, rng=0, sampler="ddim", steps=20)
    far = make_variations(gen, src, 0, 0.9, rng=0, sampler="ddim", steps=20)
    d_near = np.abs(near.astype(float) - src).mean()
    d_far = np.abs(far.astype(float) - src).mean()
    assert near.shape == src.shape and near.dtype == np.uint8
    assert d_near < 0.5 * d_far and d_near < 25, (d_near, d_far)


def test_variations_need_a_family_that_makes_them() -> None:
    cfg = tiny_cfg("vae").resolve()
    vae = VAEGenerator(cfg, ("a", "b", "c"), 16, {"all": VAEGenerator.build_net(cfg, 3)})
    with pytest.raises(ValueError, match="family 'vae' cannot make variations"):
        make_variations(vae, tiny_data(2).images, 0, 0.5, rng=0)


def test_a_variation_at_strength_one_does_not_depend_on_its_source(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from synthaug.generators import fit
    from synthaug.generators.base import to_float
    from tests.test_generators import tiny_cfg, tiny_data

    gen = fit(tiny_data(), tiny_cfg("ddpm", steps=2), tmp_path, seed=0)
    x0 = to_float(tiny_data(4).images)
    labels = torch.zeros(4, dtype=torch.long)
    opts = gen.options("ddim", 4, 1.0)
    with torch.no_grad():
        a = gen.vary(gen.nets["all"], labels, x0, 1.0, torch.Generator().manual_seed(0), opts)
        b = gen.vary(gen.nets["all"], labels, -x0, 1.0, torch.Generator().manual_seed(0), opts)
    torch.testing.assert_close(a, b)
