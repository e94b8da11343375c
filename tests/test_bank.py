"""Synthetic image bank: layout, manifest, per-image seeds, resume without duplicates, variations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from synthaug.generators import fit, load_bank, write_bank
from synthaug.generators.bank import COLUMNS
from synthaug.generators.base import Generator, file_hash
from tests.test_generators import single_thread, tiny_cfg, tiny_data  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def ddpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generator]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("gen")
    gen = fit(tiny_data(), tiny_cfg("ddpm", steps=1), run, seed=0)
    assert gen.checkpoint_hash == file_hash(run / "generator.pt")
    yield gen
    torch.set_num_threads(threads)


def test_bank_layout_and_manifest(ddpm: Generator, tmp_path: Path) -> None:
    out = tmp_path / "synthetic" / "ddpm"
    df = write_bank(ddpm, out, {0: 3, 2: 2}, seed=5, sampler="ddim", steps=3, guidance=2.0, batch_size=2)
    assert list(df.columns) == COLUMNS and len(df) == 5 and df["id"].is_unique
    assert all((out / p).exists() for p in df["path"])
    assert set(df["path"].str.split("/").str[0]) == {"small", "large"}
    row = df.iloc[0]
    assert (row["sampler"], row["steps"], row["guidance"], row["family"]) == ("ddim", 3, 2.0, "ddpm")
    assert row["source_id"] is None and row["checkpoint_hash"] == ddpm.checkpoint_hash
    images, manifest = load_bank(out)
    assert images.images.shape == (5, 16, 16) and images.class_names == ddpm.class_names
    assert images.labels.tolist() == [0, 0, 0, 2, 2] and list(images.ids) == list(manifest["id"])


def test_resumed_bank_matches_one_made_in_one_go(ddpm: Generator, tmp_path: Path) -> None:
    opts: dict[str, Any] = {"seed": 1, "sampler": "ddpm", "steps": 4, "guidance": 1.0}
    whole = write_bank(ddpm, tmp_path / "whole", {0: 4, 1: 2}, batch_size=4, **opts)

    class Interrupted(RuntimeError):
        pass

    calls = {"n": 0}
    real_sample = ddpm.sample

    def dies_on_second_batch(*args: Any, **kwargs: Any) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 2:
            raise Interrupted
        return real_sample(*args, **kwargs)

    ddpm.sample = dies_on_second_batch  # type: ignore[method-assign]
    try:
        with pytest.raises(Interrupted):
            write_bank(ddpm, tmp_path / "parts", {0: 4, 1: 2}, batch_size=3, **opts)
    finally:
        del ddpm.sample  # back to the class method
    first, _ = load_bank(tmp_path / "parts")
    assert len(first) == 3  # one finished batch is kept
    resumed = write_bank(ddpm, tmp_path / "parts", {0: 4, 1: 2}, batch_size=3, **opts)
    assert resumed["id"].is_unique and resumed["id"].tolist() == whole["id"].tolist()
    a, _ = load_bank(tmp_path / "whole")
    b, _ = load_bank(tmp_path / "parts")
    assert np.abs(a.images.astype(int) - b.images.astype(int)).max() <= 1


def test_bank_refuses_other_settings_in_the_same_folder(ddpm: Generator, tmp_path: Path) -> None:
    write_bank(ddpm, tmp_path, {0: 1}, seed=0, sampler="ddim", steps=2)
    with pytest.raises(ValueError, match="other settings"):
        write_bank(ddpm, tmp_path, {0: 1}, seed=1, sampler="ddim", steps=2)


def test_variation_bank_records_sources(ddpm: Generator, tmp_path: Path) -> None:
    sources = tiny_data(9)
    df = write_bank(ddpm, tmp_path, {1: 4}, seed=0, sampler="ddim", steps=4, sources=sources, strength=0.4)
    assert set(df["family"]) == {"variation"} and set(df["strength"]) == {0.4}
    by_id = dict(zip(sources.ids, sources.labels, strict=True))
    assert all(by_id[s] == 1 for s in df["source_id"])
    assert df["source_id"].nunique() == 3  # three class-1 sources, cycled


def test_vae_bank_has_no_sampler_settings(tmp_path: Path) -> None:
    vae = fit(tiny_data(), tiny_cfg("vae", steps=1), tmp_path / "gen")
    df = write_bank(vae, tmp_path / "bank", {0: 2}, seed=0, sampler="ddim", steps=9)
    assert df["sampler"].isna().all() and df["steps"].isna().all() and df["family"].tolist() == ["vae", "vae"]
