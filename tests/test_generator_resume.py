"""Training survives real use: a SIGKILLed run resumes to the same end, non-finite losses stop it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from synthaug.generators import NonFiniteLossError, fit
from synthaug.generators.training import CHECKPOINT
from tests.test_generators import single_thread, tiny_cfg, tiny_data  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
REPO = Path(__file__).resolve().parents[1]
STEPS = 60


def _train_script(run: Path) -> str:
    return (
        "import torch; torch.set_num_threads(1)\n"
        "from synthaug.generators import fit\n"
        "from tests.test_generators import tiny_cfg, tiny_data\n"
        f"fit(tiny_data(), tiny_cfg('ddpm', steps={STEPS}, checkpoint_every=5), {str(run)!r}, seed=0)\n"
    )


def _kill_after_first_checkpoint(run: Path, timeout: float = 120.0) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _train_script(run)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + timeout
    try:
        while not (run / CHECKPOINT).exists():
            if proc.poll() is not None:
                pytest.fail(f"training subprocess ended early: {proc.stderr.read().decode() if proc.stderr else ''}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint appeared in time")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return int(torch.load(run / CHECKPOINT, weights_only=True)["step"])


def test_killed_run_resumes_to_the_same_end(tmp_path: Path) -> None:
    killed_at = _kill_after_first_checkpoint(tmp_path / "killed")
    assert 0 < killed_at < STEPS, "the run must be killed mid-training for this test to mean anything"
    fit(tiny_data(), tiny_cfg("ddpm", steps=STEPS, checkpoint_every=5), tmp_path / "killed", seed=0, resume=True)
    resumed = pd.read_csv(tmp_path / "killed" / "loss.csv")
    assert torch.load(tmp_path / "killed" / CHECKPOINT, weights_only=True)["step"] == STEPS
    assert resumed["step"].tolist() == list(range(1, STEPS + 1))  # every step exactly once
    # RNG states are restored, so the curve continues exactly as an uninterrupted run's would.
    fit(tiny_data(), tiny_cfg("ddpm", steps=STEPS, checkpoint_every=5), tmp_path / "whole", seed=0)
    whole = pd.read_csv(tmp_path / "whole" / "loss.csv")
    pd.testing.assert_series_equal(resumed["loss"], whole["loss"], rtol=1e-4)


def test_resume_of_a_finished_run_trains_nothing(tmp_path: Path) -> None:
    cfg = tiny_cfg("gan", steps=2)
    fit(tiny_data(), cfg, tmp_path, seed=0)
    before = (tmp_path / "loss.csv").read_text()
    gen = fit(tiny_data(), cfg, tmp_path, seed=0, resume=True)
    assert (tmp_path / "loss.csv").read_text() == before and gen.sample(0, 1, rng=0).shape == (1, 16, 16)
    with pytest.raises(ValueError, match="another config or seed"):
        fit(tiny_data(), tiny_cfg("gan", steps=3), tmp_path, seed=0, resume=True)


@pytest.mark.parametrize("family", ["ddpm", "vae"])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(family: str, tmp_path: Path) -> None:
    cfg = tiny_cfg(family, steps=20, checkpoint_every=1, lr=1e30)
    with pytest.raises(NonFiniteLossError, match=r"at step (\d+)") as err:
        fit(tiny_data(), cfg, tmp_path, seed=0)
    found = re.search(r"at step (\d+)", str(err.value))
    assert found is not None
    failed = int(found.group(1))
    assert "last good checkpoint kept" in str(err.value)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert 0 < state["step"] < failed
    weights = state["trainer"]["unet" if family == "ddpm" else "vae"]
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
    assert not (tmp_path / "generator.pt").exists()
