"""The GAN's small-data aids: minibatch-std feature and DiffAugment."""

from __future__ import annotations

import pytest
import torch

from synthaug.generators.gan import DIFFAUGMENT, Discriminator, GANTrainer, diff_augment, minibatch_std
from tests.test_generators import tiny_cfg, tiny_data


def test_minibatch_std_is_zero_for_identical_samples_and_positive_otherwise():
    same = torch.ones(8, 5) * torch.arange(5.0)  # (8, 5), every row equal
    assert minibatch_std(same).abs().max() < 1e-3
    varied = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    std = minibatch_std(varied)
    assert std.shape == (8, 1) and (std > 0.3).all()


def test_minibatch_std_groups_follow_the_batch_size():
    # 6 rows -> groups of 3 (the largest divisor <= 4): rows j, j + 2, j + 4 form group j.
    h = torch.tensor([[0.0], [10.0], [0.0], [10.0], [0.0], [10.0]])
    assert torch.allclose(minibatch_std(h), torch.full((6, 1), 1e-4), atol=1e-3)  # groups hold equal values
    h = torch.tensor([[0.0], [0.0], [0.0], [2.0], [4.0], [6.0]])  # group 0: (0, 0, 4), group 1: (0, 2, 6)
    expected = torch.stack([torch.tensor(v).std(unbiased=False) for v in ([0.0, 0.0, 4.0], [0.0, 2.0, 6.0])])
    assert torch.allclose(minibatch_std(h).squeeze(1), expected.repeat(3), atol=1e-4)
    assert minibatch_std(torch.randn(1, 4)).eq(0).all()  # no group to compare with


def test_discriminator_sees_diversity_through_minibatch_std():
    torch.manual_seed(0)
    d = Discriminator(16, (8, 16), num_classes=None, conditioning="projection", sn=False, mbstd=True)
    with torch.no_grad():
        d.head.weight.zero_()
        d.head.weight[0, -1] = 1.0  # read only the std feature
    one = torch.rand(1, 1, 16, 16).repeat(8, 1, 1, 1)
    many = torch.rand(8, 1, 16, 16)
    assert d(one, None).abs().max() < 1e-3 < d(many, None).min()


def images(b: int = 6, s: int = 16) -> torch.Tensor:
    return torch.rand(b, 1, s, s, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.parametrize("op", DIFFAUGMENT)
def test_each_diffaugment_op_changes_pixels_keeps_shape_and_passes_gradients(op):
    x = images().requires_grad_(True)
    out = diff_augment(x, (op,), torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert not torch.allclose(out, x)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_diffaugment_is_seeded():
    x = images()
    a = diff_augment(x, DIFFAUGMENT, torch.Generator().manual_seed(3))
    b = diff_augment(x, DIFFAUGMENT, torch.Generator().manual_seed(3))
    c = diff_augment(x, DIFFAUGMENT, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_translation_moves_content_and_fills_with_black():
    x = torch.zeros(32, 1, 16, 16)
    x[:, :, 6:10, 6:10] = 1.0  # a bright square in the middle
    out = diff_augment(x, ("translation",), torch.Generator().manual_seed(0))
    assert (out == 1).sum(dim=(1, 2, 3)).eq(16).all()  # the square stays whole (shift <= 2)
    assert set(out.unique().tolist()) <= {-1.0, 0.0, 1.0} and (out == -1).any()  # the gap is black
    moved = [not torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    assert sum(moved) > 16


def test_cutout_zeroes_a_square_of_half_the_side():
    x = torch.ones(64, 1, 16, 16)
    out = diff_augment(x, ("cutout",), torch.Generator().manual_seed(0))
    zeros = (out == 0).sum(dim=(1, 2, 3))
    assert zeros.max() == 7 * 7  # a centre away from the border: |i - c| < 4 -> 7 rows x 7 columns
    assert (zeros > 0).all()


def test_unknown_diffaugment_op_is_named():
    with pytest.raises(ValueError, match="'blur'"):
        diff_augment(images(), ("blur",), torch.Generator())


def z_spread(trainer: GANTrainer) -> float:
    """Mean |G(z1, y) - G(z2, y)| over a fixed batch of pairs (eval mode)."""
    trainer.g.eval()
    gen = torch.Generator().manual_seed(99)
    y = torch.arange(3).repeat(4)
    with torch.no_grad():
        a = trainer.g(torch.randn(12, 8, generator=gen), y)
        b = trainer.g(torch.randn(12, 8, generator=gen), y)
    return float((a - b).abs().mean())


def trained(mode_seeking: float, steps: int = 100) -> tuple[GANTrainer, dict[str, float]]:
    cfg = tiny_cfg("gan", gan={"channels": (8, 16), "z_dim": 8, "mode_seeking": mode_seeking}).resolve()
    torch.manual_seed(0)
    trainer = GANTrainer(cfg, 3, torch.device("cpu"))
    data = tiny_data()
    x = torch.from_numpy(data.images).float().unsqueeze(1) / 127.5 - 1  # (N, 1, 16, 16)
    y = torch.from_numpy(data.labels)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(len(x), (6,), generator=gen)
        logs = trainer.step(x[idx], y[idx], gen)
    return trainer, logs


def test_mode_seeking_makes_the_conditional_generator_use_its_code():
    with_term, logs = trained(1.0)
    without, plain_logs = trained(0.0)
    assert logs["ms_ratio"] > 0 and "ms_ratio" not in plain_logs
    assert z_spread(with_term) > 1.5 * z_spread(without)  # measured: 0.54 vs 0.29
