"""Quality stage end to end on a tiny phantom study: judge, scores for the filters, planted copies, TSTR vs TRTR.

The run directory is built once per session (:func:`trust_run`) and shared with test_explain
and test_report: a one-cell study, a VAE trained on the cell's real fit subset with its bank,
a bank of exact copies of the fit subset (recorded as variations of them) and a bank of real
test images.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from synthaug.config import ExplainConfig, QualityConfig, SynthaugConfig, parse_generator
from synthaug.data.imageset import ImageSet
from synthaug.data.prepare import prepare_data
from synthaug.data.splits import cell_indices
from synthaug.generators import fit, write_bank
from synthaug.generators.bank import COLUMNS
from synthaug.io import read_json, write_json
from synthaug.rundir import MANIFEST, SCORES, RunDir
from synthaug.study.explain import run_explain
from synthaug.study.judges import judge_model
from synthaug.study.measure import filtering_counts
from synthaug.study.quality import run_quality
from synthaug.study.runner import run_study

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

STUDY: dict[str, Any] = {
    "data": {"size": 32, "phantom": {"n": 160}},
    "study": {
        "seeds": [0],
        "real_fractions": [1.0],
        "models": [{"name": "cnn", "cnn": {"channels": [8, 16], "hidden": [32, 16], "dropout": 0.1}}],
    },
    "train": {"epochs": 12, "batch_size": 16, "lr": 3e-3, "patience": 0},
}
QUALITY = QualityConfig(max_images_per_bank=None, explain=ExplainConfig(per_class=3))
VAE = parse_generator(
    {
        "family": "vae", "preset": "cpu", "device": "cpu", "image_size": 32, "steps": 30, "batch_size": 16,
        "lr": 2e-3, "checkpoint_every": 1000, "sample_every": 0, "vae": {"channels": (8, 16), "latent_dim": 8},
    }
)  # fmt: skip


def write_image_bank(out: Path, data: ImageSet, family: str, sources: bool) -> None:
    """A bank folder (manifest, bank.json, PNGs) holding ``data``'s own images; ``sources`` records them as sources."""
    rows = []
    for k, (image, label, src) in enumerate(zip(data.images, data.labels, data.ids, strict=True)):
        name, iid = data.class_names[label], f"{family}-{k:06d}"
        (out / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(out / name / f"{iid}.png")
        source = str(src) if sources else None
        rows.append({"id": iid, "path": f"{name}/{iid}.png", "class_id": int(label), "class_name": name, "seed": 0,
                     "source_id": source, "checkpoint_hash": "none", "family": family})  # fmt: skip
    pd.DataFrame(rows, columns=COLUMNS).to_parquet(out / MANIFEST, index=False)
    write_json(out / "bank.json", {"family": family, "class_names": list(data.class_names)})


def trust_run(factory: pytest.TempPathFactory) -> Path:
    """The shared tiny study with three banks, measured and explained (built on first use)."""
    root = factory.getbasetemp() / "trust-study"
    if (root / "built").exists():
        return root
    cfg = SynthaugConfig.model_validate(STUDY)
    run_study(cfg, root)
    data = prepare_data(cfg.data, seed=0)
    fit_idx, _ = cell_indices(data.train.labels, 1.0, cfg.data.val_fraction, 0)
    real = data.train.subset(fit_idx)
    run = RunDir(root)
    gen = fit(real, VAE, run.generator_dir("vae", 1.0, 0), seed=0)
    write_bank(gen, run.bank_dir("vae", 1.0, 0), {c: 8 for c in range(real.num_classes)}, seed=0)
    write_image_bank(run.bank_dir("copies", 1.0, 0), real, "copy", sources=True)
    write_image_bank(run.bank_dir("heldout", 1.0, 0), data.test, "heldout", sources=False)
    run_quality(cfg, run, QUALITY)
    run_explain(cfg, run, QUALITY.explain)
    (root / "built").touch()
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trust_run(tmp_path_factory)


def _bank(quality: dict[str, Any], name: str) -> dict[str, Any]:
    return next(b for b in quality["banks"] if b["bank"] == name)


def test_every_bank_is_scored_for_the_filters(run_dir: Path) -> None:
    assert [b.name for b in RunDir(run_dir).find_banks()] == ["copies", "heldout", "vae"]
    for ref in RunDir(run_dir).find_banks():
        scores = pd.read_parquet(ref.path / SCORES)
        manifest = pd.read_parquet(ref.path / MANIFEST)
        assert {"id", "class_id", "confidence", "memorized"} <= set(scores.columns)
        assert scores["id"].tolist() == manifest["id"].tolist()
        assert scores["class_id"].tolist() == manifest["class_id"].tolist()
        assert scores["confidence"].between(0, 1).all() and scores["memorized"].dtype == bool


def test_quality_json_has_overall_and_per_class_figures(run_dir: Path) -> None:
    q = read_json(run_dir / "quality.json")
    names = read_json(run_dir / "audit.json")["class_names"]
    assert q["feature_networks"] == ["encoder:cnn@f1_s0"]
    cell = q["cells"]["f1_s0"]
    assert cell["judge"]["n_train"] > 0 and 0 <= cell["judge"]["test"]["accuracy"] <= 1
    assert set(cell["real_train_vs_real_test"]["encoder"]["per_class"]) == set(names)
    vae = _bank(q, "vae")
    assert (vae["family"], vae["n_images"], vae["fraction"], vae["seed"]) == ("vae", 8 * len(names), 1.0, 0)
    for against in ("vs_train", "vs_test"):
        report = vae["quality"]["encoder"][against]
        assert report["feature_network"] == "encoder:cnn@f1_s0" and report["feature_dim"] == 16
        assert set(report["per_class"]) == set(names)
        assert report["overall"]["fid"] >= 0 and 0 <= report["overall"]["precision"] <= 1
    # Copies of the training images sit on the training manifold: FID near zero, precision and recall one.
    copies = _bank(q, "copies")["quality"]["encoder"]["vs_train"]["overall"]
    assert copies["fid"] < 1e-3 and copies["precision"] == 1.0 and copies["recall"] == 1.0
    assert copies["fid"] < vae["quality"]["encoder"]["vs_train"]["overall"]["fid"]


def test_planted_copies_are_flagged_and_held_out_images_are_not(run_dir: Path) -> None:
    q = read_json(run_dir / "quality.json")
    copies, heldout = _bank(q, "copies"), _bank(q, "heldout")
    assert copies["memorization"]["exact_copies"] == copies["n_images"]
    assert copies["memorization"]["flagged_share"] == 1.0 and copies["memorization"]["copied_train_share"] == 1.0
    assert pd.read_parquet(RunDir(run_dir).bank_dir("copies", 1.0, 0) / SCORES)["memorized"].all()
    assert heldout["memorization"]["exact_copies"] == 0
    # The test set is the baseline: only images below its own 1st percentile can be flagged (≤ 1 per measure).
    assert heldout["memorization"]["flagged_share"] <= 2 / heldout["n_images"] + 1e-9
    # The closest-pairs strip shows each copy above the identical training image.
    png = Image.open(run_dir / copies["closest_pairs_png"])
    strip = np.asarray(png)
    assert strip.shape == (2 * 32 + 1, QUALITY.top_pairs * 33 - 1)
    np.testing.assert_array_equal(strip[:32], strip[33:])


def test_tstr_on_real_training_images_matches_trtr(run_dir: Path) -> None:
    q = read_json(run_dir / "quality.json")
    trtr = q["cells"]["f1_s0"]["judge"]["test"]
    tstr = _bank(q, "copies")["tstr"]
    assert tstr["n_train"] == q["cells"]["f1_s0"]["judge"]["n_train"]
    # Same images in the same order, same network, budget and seed: the same classifier, up to float noise.
    assert abs(tstr["test"]["accuracy"] - trtr["accuracy"]) <= 0.05
    assert abs(tstr["test"]["macro_f1"] - trtr["macro_f1"]) <= 0.05
    assert set(tstr["test"]["per_class"]) == set(trtr["per_class"])
    assert _bank(q, "vae")["tstr"]["n_train"] == _bank(q, "vae")["n_images"]


def test_filtering_counts_per_threshold(run_dir: Path) -> None:
    vae = _bank(read_json(run_dir / "quality.json"), "vae")
    f = vae["filtering"]
    assert f["all"] == vae["class_counts"]
    kept = [sum(f["min_confidence"][f"{t:g}"].values()) for t in QUALITY.taus]
    assert kept == sorted(kept, reverse=True)  # a stricter threshold never keeps more
    scores = pd.DataFrame(
        {"class_id": [0, 0, 1, 1], "confidence": [0.95, 0.6, 0.85, 0.2], "memorized": [False, True, False, False]}
    )
    counts = filtering_counts(scores, ("a", "b"), [0.5, 0.9])
    assert counts["min_confidence"] == {"0.5": {"a": 2, "b": 1}, "0.9": {"a": 1, "b": 0}}
    assert counts["min_confidence_not_memorized"]["0.5"] == {"a": 1, "b": 1}
    assert counts["not_memorized"] == {"a": 1, "b": 2}


def test_rerun_reuses_results_and_a_changed_bank_is_measured_again(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)  # keeps modification times
    cfg = SynthaugConfig.model_validate(STUDY)
    stamp = {p: p.stat().st_mtime_ns for p in copy.rglob("*") if p.name in (SCORES, "best.pt", "quality.json")}
    held = RunDir(copy).bank_dir("heldout", 1.0, 0)
    manifest = pd.read_parquet(held / MANIFEST)
    manifest.iloc[:-1].to_parquet(held / MANIFEST, index=False)  # the bank lost its last image
    result = run_quality(cfg, RunDir(copy), QUALITY)
    changed = {p.relative_to(copy).as_posix() for p, t in stamp.items() if p.stat().st_mtime_ns != t}
    assert changed == {
        "quality.json",
        "banks/heldout/f1_s0/quality.json",
        "banks/heldout/f1_s0/scores.parquet",
        "judges/f1_s0/tstr/heldout/best.pt",
    }
    assert _bank(result, "heldout")["n_images"] == len(manifest) - 1
    assert len(pd.read_parquet(held / SCORES)) == len(manifest) - 1


def test_no_banks_or_disabled_writes_nothing(tmp_path: Path) -> None:
    cfg = SynthaugConfig.model_validate(STUDY)
    assert run_quality(cfg, RunDir(tmp_path)) == {}
    assert run_quality(cfg, RunDir(tmp_path), QualityConfig(enabled=False)) == {}
    assert not (tmp_path / "quality.json").exists()


def test_missing_inception_weights_fail_before_any_work(run_dir: Path) -> None:
    cfg = SynthaugConfig.model_validate(STUDY)
    before = (run_dir / "quality.json").stat().st_mtime_ns
    with pytest.raises(FileNotFoundError, match="inception_weights"):
        run_quality(cfg, RunDir(run_dir), QualityConfig(inception_weights=str(run_dir / "missing.pt")))
    assert (run_dir / "quality.json").stat().st_mtime_ns == before


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="thresholds"):
        QualityConfig(taus=[0.5, 1.5])
    with pytest.raises(ValueError, match="extra"):
        QualityConfig.model_validate({"percentil": 1.0})
    cfg = SynthaugConfig.model_validate(STUDY)
    assert judge_model(cfg, QualityConfig()).cnn.channels == (8, 16)  # the study's cnn lends its options
    assert judge_model(cfg, QualityConfig(encoder_model="vit")).name == "vit"
    with pytest.raises(ValueError, match="encoder_model"):
        judge_model(cfg, QualityConfig(encoder_model="alexnet"))


def test_study_config_carries_the_quality_section() -> None:
    cfg = SynthaugConfig.model_validate({"quality": {"percentile": 2.5, "explain": {"per_class": 2}}})
    assert cfg.quality.percentile == 2.5 and cfg.quality.explain.per_class == 2


def test_pair_strip_png_is_decodable(run_dir: Path) -> None:
    data = (run_dir / _bank(read_json(run_dir / "quality.json"), "vae")["closest_pairs_png"]).read_bytes()
    assert Image.open(io.BytesIO(data)).size[0] > 0
