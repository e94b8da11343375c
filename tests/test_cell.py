"""One grid cell end to end, the results table, and resuming an interrupted grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from synthaug.classifiers import ClassifierConfig, TrainConfig
from synthaug.classifiers import cell as cell_module
from synthaug.classifiers.cell import run_cell
from synthaug.config import load_config
from synthaug.data.cells import Cell
from synthaug.data.imageset import ImageSet
from synthaug.io import read_json
from synthaug.rundir import RunDir, cell_id
from synthaug.study.grid import grid_jobs, run_classifier_grid

SIZE = 16
CFG = ClassifierConfig(train=TrainConfig(epochs=2, batch_size=16))


def pool(n: int, seed: int) -> ImageSet:
    """Three classes told apart by which third of the image is bright."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 50, (n, SIZE, SIZE)).astype(np.uint8)
    for i, y in enumerate(labels):
        images[i, :, 5 * y : 5 * y + 5] += 160
    ids = np.array([f"s{seed}-{i}" for i in range(n)], dtype=object)
    return ImageSet(images, labels, ids, ("glioma", "meningioma", "notumor"))


def test_cell_id_is_stable_and_folder_safe() -> None:
    a = cell_id("cnn", ["classical:p=0.2", "basic"], 0.5, 3)
    assert a == "cnn__classical-p=0.2+basic__f0.5__s3"
    assert cell_id("cnn", [], 1.0, 0) == cell_id("cnn", ["none"], 1.0, 0) == "cnn__none__f1__s0"
    odd = cell_id("cnn", [{"name": "synthetic", "params": {"bank": "ddpm/v1 x"}}], 1.0, 0)
    assert "/" not in odd and " " not in odd
    assert odd != cell_id("cnn", [{"name": "synthetic", "params": {"bank": "ddpm/v1_x"}}], 1.0, 0)


def test_run_cell_writes_artifacts_and_returns_a_flat_row(tmp_path: Path) -> None:
    train = pool(60, 0)
    cell = Cell.of(train, 0.5, 0, val_fraction=0.15)
    row = run_cell(train, pool(24, 1), CFG, ["classical:p=0.5", "basic"], cell, tmp_path, device="cpu")
    for name in ("metrics.json", "history.csv", "confusion.csv", "best.pt"):
        assert (tmp_path / name).exists(), name
    assert row["cell_id"] == "cnn__classical-p=0.5+basic__f0.5__s0"
    assert row["policy"] == "classical(p=0.5)+basic"
    # 30 real images (10 per class), round(0.15 · 10) = 2 per class to validation, p·N = 12 copies.
    assert row["n_real"] == 24 and row["n_train"] == 24 + 12
    assert row["n_val"] == 6 and row["n_test"] == 24 and row["epochs_run"] == 2
    assert {"test_accuracy", "val_auroc_macro", "test_f1_notumor", "train_images_per_s"} <= set(row)
    assert all(not isinstance(v, (dict, list)) for v in row.values())  # flat
    saved = read_json(tmp_path / "metrics.json")
    assert saved["row"] == pytest.approx(row)
    confusion = pd.read_csv(tmp_path / "confusion.csv", index_col=0)
    assert confusion.to_numpy().sum() == 24 and list(confusion.columns) == ["glioma", "meningioma", "notumor"]


def test_append_result_replaces_the_same_cell(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.append_result({"cell_id": "a", "test_accuracy": 0.5})
    run.append_result({"cell_id": "b", "test_accuracy": 0.6})
    run.append_result({"cell_id": "a", "test_accuracy": 0.7})
    table = pd.read_parquet(run.results).set_index("cell_id")
    assert table["test_accuracy"].to_dict() == {"a": 0.7, "b": 0.6}
    assert [p.name for p in tmp_path.iterdir()] == ["results.parquet"]  # no temporary files left


def test_interrupted_grid_reruns_only_the_unfinished_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real_train = cell_module.train_classifier

    def counting_train(*args: Any, **kwargs: Any) -> Any:
        calls.append(Path(args[4]))  # out_dir
        return real_train(*args, **kwargs)

    monkeypatch.setattr(cell_module, "train_classifier", counting_train)
    sets = ["data.size=16", "data.phantom.n=60", "study.seeds=[0,1]", "study.workers=1"]
    cfg = load_config(None, [*sets, "study.policies=[[], [classical:p=0.2]]", "train.epochs=1", "train.batch_size=16"])
    run = RunDir(tmp_path)
    assert run_classifier_grid(cfg, run) == 4 and len(calls) == 4
    first = pd.read_parquet(run.results).set_index("cell_id").sort_index()
    assert sorted(first.index) == sorted(j.id for j in grid_jobs(cfg))

    killed = run.classifier_dir(grid_jobs(cfg)[2].id)
    (killed / "metrics.json").unlink()  # as if killed after best.pt and history.csv were written
    mtimes = {c: (run.classifier_dir(c) / "best.pt").stat().st_mtime_ns for c in first.index}
    calls.clear()
    assert run_classifier_grid(cfg, run) == 1
    assert calls == [killed]
    for c in first.index:
        changed = (run.classifier_dir(c) / "best.pt").stat().st_mtime_ns != mtimes[c]
        assert changed == (c == killed.name)
    second = pd.read_parquet(run.results).set_index("cell_id").sort_index()
    assert len(second) == 4 and second.index.is_unique
    # Same seed, same data, same policy: the re-run reproduces the lost row's metrics.
    volatile = ["wall_time_s", "train_images_per_s"]
    pd.testing.assert_frame_equal(second.drop(columns=volatile), first.drop(columns=volatile))
