"""Bring your own synthetic images: a `folder` bank through a whole study, and its bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from synthaug.config import load_config
from synthaug.data.phantoms import generate
from synthaug.generators import fit, load_generator, write_bank
from synthaug.io import read_json
from synthaug.study.runner import run_study


def _folder(root: Path, n: int = 48, size: int = 24, skip: str | None = None) -> Path:
    """Phantoms of another seed (and another size than the study's) as DIR/<class>/*.png."""
    data = generate(n, size, seed=11)
    for i, (img, c) in enumerate(zip(data.images, data.labels, strict=True)):
        name = data.class_names[c]
        if name == skip:
            continue
        (root / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / name / f"mine_{i:03d}.png")
    return root


def _config(folder: Path, per_class: int = 3, *extra: str):  # type: ignore[no-untyped-def]
    gen = f"study.generators=[{{family: folder, name: mine, folder: {{path: '{folder}'}}}}]"
    policies = f"study.policies=[[], ['synthetic:gen=mine,per_class={per_class}']]"
    return load_config(None, ["data.size=16", "data.phantom.n=80", "study.seeds=[0]", "study.real_fractions=[1.0]",
                              "study.workers=1", "train.epochs=1", "quality.epochs=1", "quality.explain.per_class=1",
                              gen, policies, *extra])  # fmt: skip


def test_a_folder_bank_goes_through_a_whole_study(tmp_path: Path) -> None:
    run = run_study(_config(_folder(tmp_path / "mine")), tmp_path / "run")
    results = pd.read_parquet(run.results)
    assert set(results["policy"]) == {"none", "synthetic(gen=mine,per_class=3)"}
    bank = run.bank_dir("mine", 1.0, 0)
    manifest = pd.read_parquet(bank / "manifest.parquet")
    assert manifest.groupby("class_id").size().tolist() == [3, 3, 3, 3] and set(manifest["family"]) == {"folder"}
    assert all(np.asarray(Image.open(bank / p)).shape == (16, 16) for p in manifest["path"])  # 24 px resized
    quality = read_json(run.quality)
    assert [b["bank"] for b in quality["banks"]] == ["mine"]  # measured like any other bank
    assert "memorization" in quality["banks"][0]
    html = (run.root / "report.html").read_text()
    assert "Bank mine" in html


def test_the_same_seed_takes_the_same_images_and_a_changed_folder_is_noticed(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "mine")
    cfg = _config(folder).study.generators[0]
    data = generate(40, 16, seed=0)
    gen = fit(data, cfg, tmp_path / "gen", seed=0)
    for out in ("a", "b"):
        write_bank(gen, tmp_path / out, {0: 2, 3: 2}, seed=5)
    for p in sorted((tmp_path / "a").rglob("*.png")):
        assert p.read_bytes() == (tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes()
    victim = next((folder / "glioma").iterdir())
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(victim)
    with pytest.raises(ValueError, match="changed since this study indexed them"):
        load_generator(tmp_path / "gen" / "generator.pt")


def test_too_few_images_a_missing_class_and_an_unreadable_file_are_named(tmp_path: Path) -> None:
    data = generate(40, 16, seed=0)
    folder = _folder(tmp_path / "mine", skip="pituitary")
    gen = fit(data, _config(folder).study.generators[0], tmp_path / "gen", seed=0)
    with pytest.raises(ValueError, match=r"class 'pituitary' .* has no images .* ask for 2"):
        write_bank(gen, tmp_path / "b1", {3: 2}, seed=0)
    have = len(list((folder / "glioma").iterdir()))
    with pytest.raises(ValueError, match=rf"class 'glioma' .* has {have} images, but the policies ask for {have + 1}"):
        write_bank(gen, tmp_path / "b2", {0: have + 1}, seed=0)
    (folder / "meningioma" / "broken.png").write_bytes(b"not a png")
    gen = fit(data, _config(folder).study.generators[0], tmp_path / "gen2", seed=0)
    n = len(list((folder / "meningioma").iterdir()))
    with pytest.raises(ValueError, match=r"cannot read '.*broken\.png'"):
        write_bank(gen, tmp_path / "b3", {1: n}, seed=0)
    with pytest.raises(Exception, match=r"folder\.path"):
        load_config(None, ["study.generators=[{family: folder}]"])
