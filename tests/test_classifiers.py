"""Every registered classifier: shapes, finite loss, gradients; ResNet pretrained stem; training loop; checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from synthaug import device
from synthaug.classifiers import ClassifierConfig, ModelConfig, TrainConfig, available_models, create_model
from synthaug.classifiers.evaluate import load_checkpoint, predict_proba
from synthaug.classifiers.train import FitData, class_weights, fit, make_optimizer, make_scheduler
from synthaug.data.imageset import ImageSet

SIZE = 16


def _loss_and_backward(model: nn.Module, num_classes: int = 3) -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.rand(4, 1, SIZE, SIZE) * 2 - 1  # (4, 1, H, W) in [-1, 1]
    logits = model(x)
    assert logits.shape == (4, num_classes)
    loss = nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0]))
    assert torch.isfinite(loss)
    loss.backward()
    return loss


@pytest.mark.parametrize("name", ["cnn", "resnet18", "vit"])
def test_builtin_models_are_registered(name: str) -> None:
    assert name in available_models()


@pytest.mark.parametrize("name", available_models())
def test_every_model_forward_loss_and_gradients(name: str) -> None:
    model = create_model(name, 3, SIZE)
    model.train()
    _loss_and_backward(model)
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: no gradient for {pname}"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"


def test_unknown_model_and_bad_options_raise() -> None:
    with pytest.raises(ValueError, match="unknown classifier"):
        create_model("alexnet", 3, SIZE)
    with pytest.raises(ValueError, match="resnet18"):
        create_model("resnet18", 3, SIZE, mode="partly")
    with pytest.raises(ValueError, match="patch_size"):
        create_model("vit", 3, 20, patch_size=8)
    with pytest.raises(ValueError, match="unknown classifier"):
        ModelConfig(name="alexnet")


@pytest.fixture
def rgb_weights(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A torchvision ResNet-18 state dict with random weights, saved like a downloaded file."""
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18_rgb.pth"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("mode", ["finetune", "frozen"])
def test_resnet_loads_rgb_weights_by_summing_conv1(mode: str, rgb_weights: tuple[Path, dict]) -> None:
    path, state = rgb_weights
    model: Any = create_model("resnet18", 3, SIZE, mode=mode, weights_path=str(path))
    conv1 = model.conv1.weight.detach()
    assert conv1.shape == (64, 1, 7, 7)
    torch.testing.assert_close(conv1, state["conv1.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(model.layer4[1].conv2.weight.detach(), state["layer4.1.conv2.weight"])
    assert model.fc.out_features == 3


def test_resnet_frozen_trains_only_fc_and_keeps_bn_statistics(rgb_weights: tuple[Path, dict]) -> None:
    path, _ = rgb_weights
    model: Any = create_model("resnet18", 3, SIZE, mode="frozen", weights_path=str(path))
    model.train()
    bn_before = model.bn1.running_mean.clone()
    _loss_and_backward(model)
    for pname, p in model.named_parameters():
        if pname.startswith("fc."):
            assert p.grad is not None and p.grad.abs().sum() > 0
        else:
            assert not p.requires_grad and p.grad is None, pname
    torch.testing.assert_close(model.bn1.running_mean, bn_before)
    opt = make_optimizer(model, TrainConfig())
    assert sum(len(g["params"]) for g in opt.param_groups) == 2  # fc weight and bias only


def test_resnet_small_stem_keeps_resolution_and_refuses_pretrained() -> None:
    small: Any = create_model("resnet18", 3, SIZE, stem="small")
    assert small.conv1.kernel_size == (3, 3) and isinstance(small.maxpool, nn.Identity)
    with pytest.raises(ValueError, match="stem=small"):
        create_model("resnet18", 3, SIZE, stem="small", mode="finetune", weights_path="unused.pth")


def test_vit_patch_size_follows_resolution() -> None:
    vit64: Any = create_model("vit", 3, 64)
    vit128: Any = create_model("vit", 3, 128)
    assert vit64.patch_embed.patch_size == (8, 8) and vit128.patch_embed.patch_size == (16, 16)


def test_class_weights_inverse_frequency() -> None:
    w = class_weights(np.array([0, 0, 0, 1]), 3)
    torch.testing.assert_close(w, torch.tensor([4 / 9, 4 / 3, 0.0]))


@pytest.mark.parametrize(("scheduler", "expected_last"), [("step", 1e-5), ("cosine", 0.0), ("none", 1e-3)])
def test_schedulers(scheduler: str, expected_last: float) -> None:
    cfg = TrainConfig(epochs=4, scheduler=scheduler, step_size=2, gamma=0.1)  # type: ignore[arg-type]
    opt = make_optimizer(nn.Linear(2, 2), cfg)
    sched = make_scheduler(opt, cfg)
    for _ in range(4):
        opt.step()
        if sched is not None:
            sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(expected_last, abs=1e-12)


def separable_set(n: int = 48, size: int = SIZE, seed: int = 0) -> ImageSet:
    """Two classes a CNN separates in a few epochs: bright left half vs bright right half."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 60, (n, size, size)).astype(np.uint8)
    for i, y in enumerate(labels):
        images[i, :, (size // 2) * y : (size // 2) * (y + 1)] += 150
    return ImageSet(images, labels, np.array([f"s{i}" for i in range(n)], dtype=object), ("left", "right"))


def _fit_data(train: ImageSet, val: ImageSet) -> FitData:
    tx, ty = torch.from_numpy(train.images).unsqueeze(1), torch.from_numpy(train.labels)
    vx, vy = torch.from_numpy(val.images).unsqueeze(1), torch.from_numpy(val.labels)
    return FitData(tx, ty, vx, vy)


def test_fit_learns_writes_history_and_checkpoint_rebuilds(tmp_path: Path) -> None:
    train, val = separable_set(48), separable_set(16, seed=1)
    cfg = ClassifierConfig(train=TrainConfig(epochs=6, batch_size=16, lr=3e-3, patience=0))
    torch.manual_seed(0)
    model = create_model("cnn", 2, SIZE, **cfg.model.options())
    meta = {"model_config": cfg.model.model_dump(mode="json"), "num_classes": 2, "image_size": SIZE, "seed": 0}
    result = fit(model, _fit_data(train, val), cfg.train, tmp_path, 0, torch.device("cpu"), meta)
    hist = result.history
    assert list(hist.columns) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
    assert len(hist) == 6 and (tmp_path / "history.csv").exists()
    assert hist["val_acc"].max() == 1.0
    assert result.best_val_loss == pytest.approx(hist["val_loss"].min())
    rebuilt, ckpt = load_checkpoint(tmp_path / "best.pt")
    assert ckpt["epoch"] == result.best_epoch
    np.testing.assert_allclose(predict_proba(rebuilt, val), predict_proba(model, val), atol=1e-6)


def test_fit_is_reproducible_for_a_seed(tmp_path: Path) -> None:
    train, val = separable_set(32), separable_set(8, seed=1)
    cfg = TrainConfig(epochs=2, batch_size=8)
    losses = []
    for run in range(2):
        torch.manual_seed(0)
        model = create_model("cnn", 2, SIZE)
        res = fit(model, _fit_data(train, val), cfg, tmp_path / str(run), 3, torch.device("cpu"), {})
        losses.append(res.history["train_loss"].tolist())
    assert losses[0] == losses[1]


def test_early_stopping_stops_after_patience(tmp_path: Path) -> None:
    train, val = separable_set(32), separable_set(8, seed=1)
    # A vanishing lr and no BatchNorm: nothing improves by min_delta after epoch 1, so patience 2 stops at 3.
    cfg = TrainConfig(epochs=10, batch_size=8, lr=1e-12, patience=2, min_delta=1e-3, scheduler="none")
    torch.manual_seed(0)
    model = create_model("cnn", 2, SIZE, dropout=0.0, batch_norm=False)
    res = fit(model, _fit_data(train, val), cfg, tmp_path, 0, torch.device("cpu"), {})
    assert (res.epochs_run, res.best_epoch) == (3, 1)


def test_pretrained_weights_without_internet_say_how_to_use_a_local_file(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error

    import torchvision.models._api as api

    def offline(url: str, *args: Any, **kwargs: Any) -> dict:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match=r"could not download the ImageNet ResNet-18 weights.*weights_path"):
        create_model("resnet18", 3, SIZE, mode="frozen")


def test_cpu_bf16_autocasts_training_only_and_stays_reproducible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, val = separable_set(32), separable_set(8, seed=1)
    seen: list[tuple[bool, torch.dtype]] = []  # (training?, conv output dtype)
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)  # the arithmetic, on any CPU (tiny nets)
    forward = nn.Conv2d.forward

    def spy(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        out = forward(self, x)
        seen.append((self.training, out.dtype))
        return out

    monkeypatch.setattr(nn.Conv2d, "forward", spy)

    def run(name: str, **options: Any) -> list[float]:
        torch.manual_seed(0)
        model = create_model("cnn", 2, SIZE)
        cfg = TrainConfig(epochs=3, batch_size=8, lr=3e-3, **options)
        res = fit(model, _fit_data(train, val), cfg, tmp_path / name, 3, torch.device("cpu"), {})
        assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32
        return res.history["train_loss"].tolist()

    bf16 = run("a", cpu_bf16=True)
    assert {dtype for training, dtype in seen if training} == {torch.bfloat16}  # every training conv in bf16
    assert {dtype for training, dtype in seen if not training} == {torch.float32}  # evaluation in fp32
    seen.clear()
    assert run("b", cpu_bf16=True) == bf16  # same seed, same bf16 run
    seen.clear()
    fp32 = run("c")
    assert {dtype for _, dtype in seen} == {torch.float32}  # off by default
    assert fp32 != bf16 and np.allclose(fp32, bf16, rtol=0.05, atol=1e-3)  # different arithmetic, same training
