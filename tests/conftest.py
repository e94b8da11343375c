"""Shared fixtures: small datasets the tests make themselves (no network, no shared data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthaug.data.phantoms import generate
from synthaug.data.prepare import write_image_folder


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Never read or write the user's ~/.cache from tests.
    monkeypatch.setenv("SYNTHAUG_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    # Tests use tiny tensors: one intra-op thread avoids OpenMP spin-waits on a shared 2-core CPU.
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def phantom_folder(tmp_path: Path) -> Path:
    """A 60-image phantom dataset written as Training/ and Testing/ folders with masks."""
    out = tmp_path / "phantom"
    write_image_folder(generate(60, 32, seed=3), out)
    return out


def save_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)
    return path


def random_images(n: int, size: int, seed: int) -> np.ndarray:
    """Distinct smooth random images (n, size, size) uint8: unrelated pictures, never duplicates."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, 4, 4)).astype(np.uint8)
    return np.stack([np.asarray(Image.fromarray(c).resize((size, size), Image.Resampling.BICUBIC)) for c in coarse])
