"""Patient-level splits: every split keeps a group whole; groups come from a column, a CSV, a regex
or the audit's duplicate groups; the split audit flags a leaking validation split; bad groups are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from synthaug.config import load_config
from synthaug.data.imageset import ImageSet
from synthaug.data.phantoms import generate
from synthaug.data.prepare import prepare_data, write_image_folder
from synthaug.data.sources import SourceError
from synthaug.data.split_audit import split_audit
from synthaug.data.splits import cell_indices, stratified_split
from synthaug.io import read_json
from synthaug.study.runner import run_study


def grouped(n_groups: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and groups: ``n_groups`` patients of 1..8 images each, one class per patient (imbalanced)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 9, n_groups)
    classes = rng.choice(4, n_groups, p=[0.4, 0.3, 0.2, 0.1])
    groups = np.repeat(np.arange(n_groups) * 13 + 5, sizes)  # arbitrary group ids
    labels = np.repeat(classes, sizes)
    order = rng.permutation(len(labels))  # images of a patient are not contiguous
    return labels[order], groups[order]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_no_group_spans_train_and_validation_and_fractions_nest(seed: int) -> None:
    labels, groups = grouped(200, seed)
    previous: set[int] = set()
    for fraction in (0.1, 0.3, 0.6, 1.0):
        fit, val = cell_indices(labels, fraction, 0.15, seed, groups)
        assert not set(groups[fit]) & set(groups[val])
        taken = set(fit) | set(val)
        assert previous <= taken  # nested across fractions
        previous = taken
        for c in range(4):  # a fraction of each class's groups (rounded: at most half a group off)
            class_groups = np.unique(groups[labels == c])
            share = np.isin(class_groups, groups[list(taken)]).mean()
            assert abs(share - fraction) <= 0.5 / len(class_groups) + 1e-9, (c, fraction, share)
        # validation holds about 15% of the subset's groups, whole
        assert 0.05 < len(set(groups[val])) / len(set(groups[fit]) | set(groups[val])) < 0.3


def test_singleton_groups_reduce_to_plain_stratified_splits() -> None:
    labels, _ = grouped(300, 9)
    plain = cell_indices(labels, 0.3, 0.15, 4)
    with_ids = cell_indices(labels, 0.3, 0.15, 4, groups=np.arange(len(labels)) * 3)
    assert all(np.array_equal(a, b) for a, b in zip(plain, with_ids, strict=True))
    _, held = stratified_split(labels, 0.2, 1, groups=np.arange(len(labels)))
    assert len(held) == sum(round(0.2 * (labels == c).sum()) for c in range(4))


def patient_folder(tmp_path: Path, layout: str = "split", per_patient: int = 3) -> Path:
    """Phantom images renamed ``p<patient>_<k>.png``, ``per_patient`` images per patient and class."""
    data = generate(96, 16, seed=3)
    root = tmp_path / "data"
    write_image_folder(data, root)
    for split in ("Training", "Testing"):
        for class_dir in sorted((root / split).iterdir()):
            for k, path in enumerate(sorted(class_dir.iterdir())):
                patient = f"{split[:2]}{class_dir.name[:3]}{k // per_patient}"
                path.rename(class_dir / f"p{patient}_{k}.png")
    if layout == "flat":  # no split folders: synthaug makes the test split
        for class_dir in (root / "Testing").iterdir():
            for path in class_dir.iterdir():
                path.rename(root / "Training" / class_dir.name / path.name)
        for class_dir in (root / "Training").iterdir():
            class_dir.rename(root / class_dir.name)
        for d in ("Training", "Testing", "masks"):
            if (root / d).exists():
                import shutil

                shutil.rmtree(root / d)
    return root


def _cfg(root: Path, *extra: str):  # type: ignore[no-untyped-def]
    return load_config(None, [f"data.source={root}", f"data.cache_dir={root.parent / 'cache'}", "data.size=16",
                              "study.seeds=[0,1]", "study.real_fractions=[0.3,1.0]", "train.epochs=1",
                              "study.workers=1", "quality.enabled=false", *extra])  # fmt: skip


def test_regex_groups_hold_in_every_cell_of_a_study(tmp_path: Path) -> None:
    root = patient_folder(tmp_path, layout="flat")
    run = run_study(_cfg(root, r"data.groups.regex=/p(\w+?)_"), tmp_path / "run")
    splits = read_json(run.splits)
    assert "patient / scan groups from data.groups" in splits["unit"]

    def patient(i: str) -> str:
        return i.split("/")[-1].split("_")[0]

    test = {patient(i) for i in splits["test"]}
    for by_fraction in splits["cells"].values():
        for cell in by_fraction.values():
            train, val = {patient(i) for i in cell["train"]}, {patient(i) for i in cell["val"]}
            assert not train & val and not train & test and not val & test
            assert not cell["audit"]["leak"]


def test_csv_and_column_groups(tmp_path: Path) -> None:
    root = patient_folder(tmp_path)
    files = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*/*.png"))
    pd.DataFrame({"file": files, "group": [f.split("/")[-1].split("_")[0] for f in files]}).to_csv(
        tmp_path / "groups.csv", index=False
    )
    data = prepare_data(_cfg(root, f"data.groups.csv={tmp_path / 'groups.csv'}").data)
    assert "from data.groups" in data.audit["split_unit"]
    assert data.train.groups is not None and len(set(data.train.groups)) < len(data.train) / 2

    parquet = tmp_path / "train.parquet"
    phantoms = generate(40, 16, seed=0)
    rows = [{"image": {"bytes": _png(img)}, "label": int(y), "patient": f"q{i // 4}"}
            for i, (img, y) in enumerate(zip(phantoms.images, phantoms.labels, strict=True))]  # fmt: skip
    pd.DataFrame(rows).to_parquet(parquet)
    data = prepare_data(_cfg(parquet, "data.groups.column=patient").data)
    assert len(set(data.train.groups.tolist())) <= 10  # type: ignore[union-attr]
    with pytest.raises(SourceError, match="no column 'patientid'"):
        prepare_data(_cfg(parquet, "data.groups.column=patientid").data)


def _png(image: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def test_duplicate_groups_are_units_without_data_groups(tmp_path: Path) -> None:
    root = patient_folder(tmp_path)
    src = next((root / "Training" / "glioma").iterdir())
    for k in range(3):  # three exact copies of one training image
        (root / "Training" / "glioma" / f"copy{k}.png").write_bytes(src.read_bytes())
    data = prepare_data(_cfg(root).data)
    ids, groups = data.train.ids.tolist(), data.train.groups
    members = [ids.index(f"Training/glioma/copy{k}.png") for k in range(3)]
    members.append(ids.index(src.relative_to(root).as_posix()))
    assert len({int(groups[m]) for m in members}) == 1  # type: ignore[index]
    assert data.audit["split_unit"] == "near-duplicate groups"


def test_bad_groups_are_named(tmp_path: Path) -> None:
    root = patient_folder(tmp_path)
    with pytest.raises(SourceError, match=r"regex 'nomatch.+': \d+ of \d+ images have no group"):
        prepare_data(_cfg(root, r"data.groups.regex=nomatch(\d)").data)
    with pytest.raises(SourceError, match=r"puts all .* images in one group"):
        prepare_data(_cfg(root, "data.groups.regex=png").data)
    pd.DataFrame({"file": ["x.png"], "group": ["a"]}).to_csv(tmp_path / "partial.csv", index=False)
    with pytest.raises(SourceError, match=r"csv .* images have no group"):
        prepare_data(_cfg(root, f"data.groups.csv={tmp_path / 'partial.csv'}").data)
    with pytest.raises(ValueError, match="one of column, csv or regex"):
        load_config(None, ["data.groups.regex=a", "data.groups.column=b"])
    # a group holding two classes, and classes with too few groups: named warnings
    data = prepare_data(_cfg(root, r"data.groups.regex=_(\d+)\.png").data)  # groups by image number: classes mix
    warnings = data.audit["group_warnings"]
    assert any("hold images of more than one class" in w for w in warnings), warnings


def test_split_audit_flags_a_planted_leak_and_not_a_clean_split() -> None:
    data = generate(160, 32, seed=5)
    train, test = data.split("train"), data.split("test")
    fit, val = train.subset(np.arange(0, 60)), train.subset(np.arange(60, 90))
    clean = split_audit(fit, val, test, 0.99)
    assert not clean["leak"] and clean["val_near_copies"] == 0
    leaky_val = ImageSet.concat([val, fit.subset(np.arange(20))])  # a third of validation copies training images
    leak = split_audit(fit, leaky_val, test, 0.99)
    assert leak["leak"] and leak["val_near_copies"] > 0.3 and leak["val_max_correlation"] > 0.999


def test_no_image_of_a_validation_or_test_group_reaches_a_generator(tmp_path: Path) -> None:
    root = patient_folder(tmp_path, layout="flat")
    vae = "{family: vae, image_size: 16, steps: 2, batch_size: 8, vae: {channels: [8, 16], latent_dim: 8}}"
    gen = f"study.generators=[{vae}]"
    run = run_study(
        _cfg(root, r"data.groups.regex=/p(\w+?)_", gen, "study.policies=[[], ['synthetic:gen=vae,per_class=2']]"),
        tmp_path / "run",
    )
    splits = read_json(run.splits)

    def patient(i: str) -> str:
        return i.split("/")[-1].split("_")[0]

    test = {patient(i) for i in splits["test"]}
    checked = 0
    for seed, by_fraction in splits["cells"].items():
        for fraction, cell in by_fraction.items():
            seen = read_json(run.generator_dir("vae", float(fraction), int(seed)) / "trained_on.json")["ids"]
            assert set(seen) == set(cell["train"])  # the cell's training images, nothing else
            val = {patient(i) for i in cell["val"]}
            assert not {patient(i) for i in seen} & (val | test)
            checked += 1
    assert checked == 4
