"""Augmentation policies: registry, classical expansion counts and determinism, online transforms on 1xHxW uint8."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthaug.augment import (
    Geometric,
    Policy,
    PolicySpec,
    available_policies,
    build_policy,
    expand_training_set,
    online_transform,
    parse_policy,
    register_policy,
)
from synthaug.augment import policies as policies_module
from synthaug.augment.policies import GeometricParams
from synthaug.data.imageset import ImageSet

ONLINE = ["basic", "autoaugment", "randaugment", "trivialaugment"]


def tiny_set(n: int = 20, size: int = 24, seed: int = 0) -> ImageSet:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    return ImageSet(
        images=images,
        labels=np.arange(n) % 3,
        ids=np.array([f"img{i}" for i in range(n)], dtype=object),
        class_names=("a", "b", "c"),
        masks=images > 128,
    )


def test_registry_lists_builtin_policies_and_rejects_unknowns() -> None:
    assert {"none", "classical", *ONLINE} <= set(available_policies())
    with pytest.raises(ValueError, match="unknown policy 'mixup'"):
        build_policy(PolicySpec(name="mixup"))
    with pytest.raises(ValueError, match=r"unknown parameter 'q'. Its parameters \(defaults\): .*p=0.2"):
        build_policy(PolicySpec(name="classical", params={"q": 0.2}))
    with pytest.raises(ValueError, match="p: Input should be greater than or equal to 0"):
        build_policy(PolicySpec(name="classical", params={"p": -1}))


def test_parse_policy_command_line_form() -> None:
    spec = parse_policy("classical:p=0.5,degrees=10")
    assert spec == PolicySpec(name="classical", params={"p": 0.5, "degrees": 10})
    assert spec.label() == "classical(degrees=10,p=0.5)"
    assert parse_policy("none").params == {}


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_classical_expansion_adds_p_times_n_copies_deterministically(p: float) -> None:
    real = tiny_set()
    policy = build_policy(PolicySpec(name="classical", params={"p": p}))
    out = expand_training_set(real, [policy], seed=7)
    n_added = round(p * len(real))
    assert len(out) == len(real) + n_added
    added_ids = out.ids[len(real) :]
    assert all("#classical" in i for i in added_ids)
    assert len(set(out.ids)) == len(out)  # copies get new, unique ids
    # Each copy keeps its source's label; the source id is the part before '#'.
    by_id = dict(zip(real.ids, real.labels, strict=True))
    assert [by_id[i.split("#")[0]] for i in added_ids] == out.labels[len(real) :].tolist()
    assert out.masks is not None and out.masks.shape == out.images.shape
    again = expand_training_set(real, [policy], seed=7)
    other = expand_training_set(real, [policy], seed=8)
    np.testing.assert_array_equal(out.images, again.images)
    np.testing.assert_array_equal(out.ids, again.ids)
    assert not np.array_equal(out.images[len(real) :], other.images[len(real) :])


def test_classical_copies_are_transformed_not_duplicated() -> None:
    real = tiny_set()
    out = expand_training_set(real, [build_policy(PolicySpec(name="classical", params={"p": 0.5}))], seed=0)
    src = [int(i.split("#")[0].removeprefix("img")) for i in out.ids[len(real) :]]
    for k, s in enumerate(src):
        assert not np.array_equal(out.images[len(real) + k], real.images[s])


def test_same_policy_draws_same_copies_in_any_combination() -> None:
    real = tiny_set()
    classical = build_policy(PolicySpec(name="classical", params={"p": 0.5}))
    alone = expand_training_set(real, [classical], seed=3)
    combined = expand_training_set(real, [build_policy(PolicySpec(name="basic")), classical], seed=3)
    np.testing.assert_array_equal(alone.images, combined.images)


@pytest.mark.parametrize("name", ONLINE)
def test_online_policy_changes_pixels_keeps_shape_and_dtype(name: str) -> None:
    transform = build_policy(PolicySpec(name=name)).online()
    assert transform is not None
    x = torch.from_numpy(tiny_set(8, 16).images).unsqueeze(1)  # (8, 1, 16, 16) uint8
    changed = 0
    for seed in range(3):
        for img in x:  # one 1xHxW image at a time
            y = transform(img[None], torch.Generator().manual_seed(seed))
            assert y.shape == (1, 1, 16, 16) and y.dtype == torch.uint8
            changed += int(not torch.equal(y, img[None]))
    assert changed >= 12  # a sub-policy may skip an image now and then, never most of them


@pytest.mark.parametrize("name", ONLINE)
def test_online_policy_is_reproducible_from_its_generator(name: str) -> None:
    transform = build_policy(PolicySpec(name=name)).online()
    assert transform is not None
    x = torch.from_numpy(tiny_set(6, 16).images).unsqueeze(1)
    state = torch.random.get_rng_state()
    a = transform(x, torch.Generator().manual_seed(5))
    b = transform(x, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched


def test_geometric_known_maps() -> None:
    x = torch.randint(0, 256, (2, 1, 16, 12), dtype=torch.uint8)
    geo = Geometric()
    full = (0, 0, 16, 12)
    assert torch.equal(geo.apply_batch(x, [GeometricParams(False, 0.0, full)] * 2), x)
    assert torch.equal(geo.apply_batch(x, [GeometricParams(True, 0.0, full)] * 2), x.flip(-1))
    sq = torch.randint(0, 256, (1, 1, 16, 16), dtype=torch.uint8)
    rotated = geo.apply_batch(sq, [GeometricParams(False, 90.0, (0, 0, 16, 16))])
    assert torch.equal(rotated, sq.rot90(1, (-2, -1)))  # positive angle = counter-clockwise


def test_none_and_no_policies_are_identity() -> None:
    real = tiny_set()
    out = expand_training_set(real, [build_policy(PolicySpec(name="none"))], seed=0)
    assert out is real
    assert online_transform([build_policy(PolicySpec(name="none"))]) is None


def test_new_policy_registers_and_combines_with_online() -> None:
    @register_policy("test-duplicate-first")
    class DuplicateFirst(Policy):
        name = "test-duplicate-first"

        def added(self, real, current, rng, ctx):  # type: ignore[no-untyped-def]
            return current.subset([0])

    try:
        real = tiny_set()
        policies = [build_policy(parse_policy(s)) for s in ("test-duplicate-first", "basic")]
        assert len(expand_training_set(real, policies, seed=0)) == len(real) + 1
        assert online_transform(policies) is not None
        with pytest.raises(ValueError, match="already registered"):
            register_policy("test-duplicate-first")(DuplicateFirst)
    finally:
        policies_module._REGISTRY.pop("test-duplicate-first")
