"""Diffusion sampling procedures: the schedule math lives in diffusers schedulers; this module
chooses one and runs the ~15-line denoising loop (also used for SDEdit variations).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from torch import Tensor

# eps_fn(x_t (N, 1, S, S), t (scalar tensor)) -> predicted noise (N, 1, S, S)
EpsFn = Callable[[Tensor, Tensor], Tensor]
SAMPLERS = ("ddpm", "ddim", "dpm++", "dpm++sde")
DEFAULT_STEPS = {"ddpm": 1000, "ddim": 50, "dpm++": 20, "dpm++sde": 20}


def train_scheduler(num_train_timesteps: int = 1000, beta_schedule: str = "linear") -> Any:
    """The forward process used in training: linear betas 1e-4..0.02 by default (Ho et al. 2020)."""
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=beta_schedule,
        prediction_type="epsilon",
        clip_sample=True,
    )


def make_scheduler(name: str, train_config: Any, clip_sample: bool = True) -> Any:
    """A sampling scheduler sharing the training betas.

    ``ddpm``: ancestral sampling (Ho et al. eq. 11); ``ddim``: eta = 0, deterministic (Song et al.
    eq. 12); ``dpm++``: DPM-Solver++(2M) in data prediction (Lu et al. 2022); ``dpm++sde``: its
    stochastic form (SDE-DPM-Solver++(2M)), which adds fresh noise at every step like the
    ancestral sampler, so an error of the network is not carried along a fixed path. DDIM and DPM++ use
    "trailing" spacing so their first step is the last training timestep (Lin et al. 2024).
    ``clip_sample`` clips the predicted clean image to [-1, 1] in every sampler (the data range).
    """
    if name == "ddpm":
        return DDPMScheduler.from_config(train_config, clip_sample=clip_sample)
    if name == "ddim":
        return DDIMScheduler.from_config(
            train_config, clip_sample=clip_sample, timestep_spacing="trailing", set_alpha_to_one=True
        )
    if name in ("dpm++", "dpm++sde"):
        # Thresholding at 1.0 clips x0_hat to [-1, 1] like clip_sample (Lu et al.: pixel-space models).
        return DPMSolverMultistepScheduler.from_config(
            train_config,
            algorithm_type="dpmsolver++" if name == "dpm++" else "sde-dpmsolver++",
            solver_order=2,
            timestep_spacing="trailing",
            final_sigmas_type="zero",
            thresholding=clip_sample,
            sample_max_value=1.0,
        )
    raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


def denoise(
    eps_fn: EpsFn,
    scheduler: Any,
    x: Tensor,
    steps: int,
    rng: torch.Generator | list[torch.Generator],
    strength: float = 1.0,
    start_noise: Tensor | None = None,
) -> Tensor:
    """Run the reverse process from pure noise ``x`` (strength 1) or from a noised image.

    With ``strength`` < 1, ``x`` is a clean image (N, 1, S, S) that is first noised to the timestep
    ``strength * T`` with ``start_noise`` and then denoised (SDEdit, Meng et al. 2022).
    Returns the final sample (N, 1, S, S).
    """
    scheduler.set_timesteps(steps, device=x.device)
    timesteps = scheduler.timesteps  # descending, (steps,)
    start = steps - min(steps, round(steps * strength))
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    if strength >= 1.0 and start_noise is not None:
        x = start_noise  # strength 1: a variation starts from pure noise, independent of its source
    elif strength < 1.0:
        if start == steps:  # strength 0: nothing to do
            return x
        x = scheduler.add_noise(
            x,
            start_noise if start_noise is not None else torch.zeros_like(x),
            timesteps[start : start + 1].repeat(len(x)),
        )
    for t in timesteps[start:]:
        eps = eps_fn(x, t).float()  # (N, 1, S, S)
        x = scheduler.step(eps, t, x, generator=rng).prev_sample
    return x


def count_evaluations(eps_fn: EpsFn) -> tuple[EpsFn, list[int]]:
    """Wrap ``eps_fn`` to count calls (one call = one denoiser evaluation per image in the batch)."""
    calls = [0]

    def counted(x: Tensor, t: Tensor) -> Tensor:
        calls[0] += 1
        return eps_fn(x, t)

    return counted, calls
