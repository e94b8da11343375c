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
    assert quality["banks"][0]["test_exposure"]["n_synthetic"] == 12  # made outside: checked against test images
    html = (run.root / "report.html").read_text()
    assert "Bank mine" in html and "Did an outside generator see the test images?" in html


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


def _variation_folder(root: Path, data) -> Path:  # type: ignore[no-untyped-def]
    """Two variations of every image of ``data``, each in its source's class folder; one source named by
    file name only, and one image made from an image that is not in ``data`` at all."""
    rows = []
    for name in data.class_names:
        (root / name).mkdir(parents=True, exist_ok=True)
    for img, c, sid in zip(data.images, data.labels, data.ids, strict=True):
        for r in range(2):
            rel = f"{data.class_names[c]}/{sid}_v{r}.png"
            Image.fromarray(255 - img if r else img).save(root / rel)
            rows.append({"path": rel, "source": str(sid)})
    rows[0]["source"] = Path(rows[0]["source"]).name  # by file name: still matched
    Image.fromarray(data.images[0]).save(root / data.class_names[data.labels[0]] / "stray.png")
    rows.append({"path": f"{data.class_names[data.labels[0]]}/stray.png", "source": "elsewhere/not_in_this_cell.png"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def test_a_folder_with_a_manifest_serves_the_variation_policy(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = generate(24, 16, seed=0)
    folder = _variation_folder(tmp_path / "vars", data)
    gen = fit(data, _config(folder).study.generators[0], tmp_path / "gen", seed=0)
    counts = {c: 2 * int((data.labels == c).sum()) for c in range(4)}  # y = 2: both variations of every source
    with caplog.at_level("INFO"):
        manifest = write_bank(gen, tmp_path / "bank", counts, seed=3, sources=data, batch_size=5)
    stray = data.class_names[data.labels[0]]
    assert f"1 '{stray}' images were made from real images that are not among" in caplog.text
    assert manifest["source_id"].notna().all() and manifest["strength"].isna().all()  # the folder ignores strength
    assert (manifest.groupby("source_id").size() == 2).all() and set(manifest["source_id"]) == set(data.ids)
    wanted = pd.read_csv(folder / "manifest.csv")
    for row in manifest.itertuples():  # each image is one of the files made from its recorded source
        img = np.asarray(Image.open(tmp_path / "bank" / row.path))
        own = [np.asarray(Image.open(folder / p)) for p, s in zip(wanted["path"], wanted["source"], strict=True)
               if s in (row.source_id, Path(str(row.source_id)).name)]  # fmt: skip
        assert any(np.array_equal(img, o) for o in own)
    with pytest.raises(ValueError, match=r"needs 3 image\(s\) made from .* lists 2"):
        write_bank(gen, tmp_path / "bank3", {0: 3 * int((data.labels == 0).sum())}, seed=3, sources=data)


def test_a_manifest_naming_a_missing_image_or_lacking_columns_is_refused(tmp_path: Path) -> None:
    data = generate(24, 16, seed=0)
    folder = _variation_folder(tmp_path / "vars", data)
    table = pd.read_csv(folder / "manifest.csv")
    table.loc[len(table)] = {"path": "glioma/nope.png", "source": str(data.ids[0])}
    table.to_csv(folder / "manifest.csv", index=False)
    with pytest.raises(ValueError, match=r"manifest\.csv line \d+ names 'glioma/nope\.png'"):
        fit(data, _config(folder).study.generators[0], tmp_path / "gen", seed=0)
    table.drop(columns="source").to_csv(folder / "manifest.csv", index=False)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['source'\]"):
        fit(data, _config(folder).study.generators[0], tmp_path / "gen2", seed=0)
    (folder / "manifest.csv").unlink()
    gen = fit(data, _config(folder).study.generators[0], tmp_path / "gen3", seed=0)
    with pytest.raises(ValueError, match=r"no manifest\.csv"):
        write_bank(gen, tmp_path / "bank", {0: 1}, seed=0, sources=data)


def test_a_variation_folder_goes_through_a_study(tmp_path: Path) -> None:
    from synthaug.data.phantoms import generate as phantoms

    everything = phantoms(80, 16, seed=0)  # the study's data (data.phantom.n=80, size 16, seed 0)
    folder = _variation_folder(tmp_path / "vars", everything)
    cfg = _config(folder, 3, "study.policies=[[], ['variation:gen=mine,y=1']]")
    run = run_study(cfg, tmp_path / "run")
    (bank,) = run.banks.glob("*/*/manifest.parquet")
    manifest = pd.read_parquet(bank)
    trained = set(read_json(run.generator_dir("mine", 1.0, 0) / "trained_on.json")["ids"])
    assert set(manifest["source_id"]) <= trained and manifest["family"].eq("variation").all()


def test_a_folder_holding_the_studys_test_images_is_called_out(tmp_path: Path) -> None:
    from synthaug.data.phantoms import generate as phantoms

    everything = phantoms(80, 16, seed=0)  # the study's data, test images included
    folder = tmp_path / "leaky"
    for i, (img, c) in enumerate(zip(everything.images, everything.labels, strict=True)):
        (folder / everything.class_names[c]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / everything.class_names[c] / f"x{i:03d}.png")
    n = min(int((everything.labels == c).sum()) for c in range(4))
    run = run_study(_config(folder, n), tmp_path / "run")
    exposure = read_json(run.quality)["banks"][0]["test_exposure"]
    assert exposure["exact_copies"] > 0
    html = (run.root / "report.html").read_text()
    assert "may have seen this study&#x27;s test images" in html or "may have seen this study's test images" in html
