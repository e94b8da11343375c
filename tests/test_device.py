"""Device choice, and CPU bf16 refused where the CPU would only emulate it (many times slower)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from synthaug import device
from synthaug.classifiers import TrainConfig, create_model
from synthaug.classifiers.train import fit
from synthaug.config import ConfigError, load_config
from synthaug.config.generators import DDPMOptions, LDMOptions
from synthaug.generators.ddpm import autocast
from synthaug.study.runner import run_study
from tests.test_classifiers import SIZE, _fit_data, separable_set


@pytest.fixture
def emulated_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)


def test_the_bf16_check_answers_for_this_cpu() -> None:
    assert isinstance(device.cpu_has_native_bf16(), bool)


def test_cuda_asked_for_without_cuda_is_an_error_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.pick_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="CUDA is not available; use device=auto or cpu"):
        device.pick_device("cuda")


@pytest.mark.parametrize(
    ("sets", "named"),
    [
        (["train.cpu_bf16=true"], r"train\.cpu_bf16: true .* no native bf16 .* set train\.cpu_bf16: false"),
        (["study.generators=[{family: ldm, ldm: {cpu_bf16: true}}]", "study.policies=[[], ['synthetic:gen=ldm,y=1']]"],
         r"generator 'ldm': ldm\.cpu_bf16: true .* set generator 'ldm': ldm\.cpu_bf16: false"),
    ],
)  # fmt: skip
def test_a_study_asking_for_emulated_cpu_bf16_is_refused_before_it_starts(
    sets: list[str], named: str, emulated_bf16: None, tmp_path: Path
) -> None:
    config = load_config(None, ["data.size=16", "data.phantom.n=40", "study.device=cpu", *sets])
    with pytest.raises(ConfigError, match=named):
        run_study(config, tmp_path / "run")
    assert not (tmp_path / "run" / "config.yaml").exists()  # nothing recorded: the corrected command starts clean


def test_a_generator_on_cuda_is_not_held_to_the_cpu_check(emulated_bf16: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from synthaug.study import runner

    monkeypatch.setattr(runner, "pick_device", lambda preference: torch.device("cuda"))
    runner._require_native_bf16(load_config(None, ["study.generators=[{family: ldm, ldm: {cpu_bf16: true}}]"]))


def test_the_training_loops_refuse_emulated_cpu_bf16_where_they_run(emulated_bf16: None, tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    data = _fit_data(separable_set(8), separable_set(4, seed=1))
    with pytest.raises(ConfigError, match=r"train\.cpu_bf16"):
        fit(create_model("cnn", 2, SIZE), data, TrainConfig(epochs=1, cpu_bf16=True), tmp_path, 0, cpu, {})
    assert not (tmp_path / "history.csv").exists()
    with pytest.raises(ConfigError, match=r"ldm\.cpu_bf16"):
        autocast(cpu, LDMOptions(cpu_bf16=True))
    with pytest.raises(ConfigError, match=r"ddpm\.cpu_bf16"):
        autocast(cpu, DDPMOptions(cpu_bf16=True))
    with autocast(cpu, DDPMOptions()):  # fp32, the default, runs anywhere
        pass
