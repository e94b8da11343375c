"""The audit finds planted copies, keeps distinct images apart, and the leakage filter acts on it."""

import io
from pathlib import Path

import numpy as np
from PIL import Image

from synthaug.config import DataConfig, LeakageConfig
from synthaug.data.audit import find_duplicates
from synthaug.data.load import scan_imageset
from synthaug.data.phantoms import generate
from synthaug.data.prepare import prepare_data

from .conftest import save_png


def _near_copy(img: np.ndarray) -> np.ndarray:
    """Brightness/contrast change, resize round trip and JPEG re-encoding: a near duplicate."""
    changed = np.clip(img.astype(np.float32) * 0.8 + 20, 0, 255).astype(np.uint8)
    small = Image.fromarray(changed).resize((img.shape[1] * 3 // 4, img.shape[0] * 3 // 4))
    buf = io.BytesIO()
    small.resize(img.shape[::-1]).save(buf, format="JPEG", quality=85)
    return np.asarray(Image.open(buf))


def _planted(tmp_path: Path) -> Path:
    data = generate(40, 64, seed=11, test_fraction=0.25)
    folder = {"train": "Training", "test": "Testing"}
    for i in range(len(data)):
        save_png(tmp_path / folder[data.splits[i]] / data.class_names[data.labels[i]] / f"{i}.png", data.images[i])
    train0 = np.flatnonzero(data.splits == "train")[0]
    cls = data.class_names[data.labels[train0]]
    other = data.class_names[(data.labels[train0] + 1) % 4]
    save_png(tmp_path / "Testing" / cls / "exact_copy.png", data.images[train0])
    save_png(tmp_path / "Testing" / cls / "near_copy.png", _near_copy(data.images[train0]))
    save_png(tmp_path / "Training" / other / "mislabelled_copy.png", data.images[train0])
    return tmp_path


def test_planted_exact_and_near_duplicates_are_found(tmp_path: Path) -> None:
    report = prepare_data(DataConfig(source=str(_planted(tmp_path)), size=64)).audit
    exact, near = report["exact_groups"], report["near_groups"]
    assert len(exact) == 1 and len(exact[0]["members"]) == 3  # original, test copy, mislabelled copy
    assert exact[0]["cross_split"] and exact[0]["label_conflict"]
    assert len(near) == 1 and any(m.endswith("near_copy.png") for m in near[0]["members"])
    assert report["exact_duplicates"]["test_images_duplicating_train"] == 1
    assert report["near_duplicates"]["test_images_duplicating_train"] == 2


def test_leakage_filter_removes_test_copies_and_can_be_disabled(tmp_path: Path) -> None:
    root = _planted(tmp_path)
    data = prepare_data(DataConfig(source=str(root), size=64))
    assert sorted(Path(i).name for i in data.removed_test_ids) == ["exact_copy.png", "near_copy.png"]
    assert data.audit["leakage_filter"]["removed_test_images"] == 2
    exact_only = prepare_data(DataConfig(source=str(root), size=64, leakage=LeakageConfig(near_duplicates=False)))
    assert [Path(i).name for i in exact_only.removed_test_ids] == ["exact_copy.png"]
    kept = prepare_data(DataConfig(source=str(root), size=64, leakage=LeakageConfig(remove_test_duplicates=False)))
    assert kept.removed_test_ids == [] and len(kept.test) == len(data.test) + 2


def test_distinct_slices_of_the_same_kind_are_not_merged() -> None:
    # 300 phantom slices share anatomy, pose range and class: similar, but none is a copy.
    dups = find_duplicates(scan_imageset(generate(300, 64, seed=5)))
    assert (dups.exact >= 0).sum() == 0 and (dups.near >= 0).sum() == 0
