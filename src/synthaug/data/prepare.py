"""Prepare a study's data: scan the source, audit it, split it, remove leaked test images."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from synthaug.config.data import DataConfig
from synthaug.data import phantoms
from synthaug.data.audit import audit_report, find_duplicates, leaked_test_rows
from synthaug.data.groups import units, user_groups
from synthaug.data.imageset import ImageSet
from synthaug.data.load import Scan, scan_imageset, scan_source, scan_to_imageset
from synthaug.data.sources import RawSource, SourceError, list_source
from synthaug.data.splits import stratified_split

log = logging.getLogger(__name__)
_PREPARED: dict[str, PreparedData] = {}  # this process's prepared data, by config and seed


@dataclass(frozen=True)
class PreparedData:
    """Everything later stages need: the audit, and train / test image sets after the leakage filter."""

    train: ImageSet
    test: ImageSet
    audit: dict
    removed_test_ids: list[str]


def scan_data(cfg: DataConfig) -> tuple[Scan, RawSource | None]:
    """List and decode the configured source (phantoms are generated in memory)."""
    if cfg.source == "phantom":
        p = cfg.phantom
        data = phantoms.generate(
            p.n, cfg.size, p.seed, p.imbalance, p.rare_class, p.test_fraction, p.lesion_scale, p.lesion_contrast
        )
        return scan_imageset(data), None
    source = list_source(cfg.source, cfg.class_names, cfg.groups.column)
    cache = Path(cfg.cache_dir) if cfg.cache_dir else None
    scan = scan_source(source, cfg.size, cache, cfg.workers)
    _warn_about_inputs(scan)
    return scan, source


def _warn_about_inputs(scan: Scan) -> None:
    ok = scan.ok
    if (~ok).any():
        bad = [f"{i} ({e})" for i, e in zip(scan.ids[~ok][:5], scan.errors[~ok][:5], strict=False)]
        log.warning(
            "skipped %d unreadable image files: %s%s", (~ok).sum(), "; ".join(bad), " …" if (~ok).sum() > 5 else ""
        )
    modes = sorted(set(scan.modes[ok].tolist()))
    if len(modes) > 1:
        log.warning(
            "images come in several modes %s; all are converted to one channel (16-bit ones min-max scaled)", modes
        )
    if ok.any():
        area = scan.widths * scan.heights
        lo, hi = np.argmin(np.where(ok, area, np.inf)), np.argmax(np.where(ok, area, -1))
        if area[hi] > 16 * area[lo]:
            log.warning(
                "image sizes differ widely: %s is %dx%d, %s is %dx%d; all are padded to square and resized",
                scan.ids[lo],
                scan.widths[lo],
                scan.heights[lo],
                scan.ids[hi],
                scan.widths[hi],
                scan.heights[hi],
            )


def _assign_test_split(scan: Scan, unit: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Stratified test split for a source without one, keeping each unit (patient, duplicate group) on one side."""
    ok = np.flatnonzero(scan.ok)
    _, held = stratified_split(scan.labels[ok], fraction, seed, groups=unit[ok])
    test_units = set(unit[ok[held]].tolist())
    return np.array(["test" if u in test_units else "train" for u in unit], dtype=object)


def prepare_data(cfg: DataConfig, seed: int = 0) -> PreparedData:
    """Scan, audit, split (when the source has none) and remove leaked test images."""
    scan, source = scan_data(cfg)
    if not scan.ok.any():
        raise SourceError(f"no readable images in {cfg.source!r}; see the unreadable-file list above")
    lk = cfg.leakage
    dups = find_duplicates(scan, lk.phash_max_distance, lk.min_correlation)
    names = user_groups(cfg.groups, scan.ids, source)
    unit = units(scan.labels, dups.near, names, scan.class_names)
    if not (scan.splits == "test").any():
        scan = dataclasses.replace(scan, splits=_assign_test_split(scan, unit.ids, cfg.test_fraction, seed))
    p = cfg.phantom
    phantom = f"built-in phantoms (n={p.n}, seed={p.seed}, size={cfg.size}, rare_class={p.rare_class})"
    report = audit_report(scan, source, dups, lk.phash_max_distance, lk.min_correlation, phantom)
    leaked = np.zeros(len(scan.ids), bool)
    same_patient = np.zeros(len(scan.ids), bool)
    if lk.remove_test_duplicates:
        leaked = leaked_test_rows(scan, dups.near if lk.near_duplicates else dups.exact)
        if names is not None:  # the source's own test split may hold patients it also trains on
            same_patient = leaked_test_rows(scan, np.unique(names.astype(str), return_inverse=True)[1]) & ~leaked
            leaked |= same_patient
    report["leakage_filter"] = {
        "enabled": lk.remove_test_duplicates,
        "kind": "near" if lk.near_duplicates else "exact",
        "removed_test_images": int(leaked.sum()),
        "removed_test_images_of_training_patients": int(same_patient.sum()),
        "test_images_kept": int(((scan.splits == "test") & scan.ok & ~leaked).sum()),
    }
    if leaked.any():
        log.info("removed %d test images that duplicate a training image", leaked.sum())
    report["split_unit"] = unit.description
    report["group_warnings"] = list(unit.warnings)
    data = scan_to_imageset(scan, ~leaked, unit.ids)
    train, test = data.split("train"), data.split("test")
    report["class_warnings"] = check_classes(train, test, cfg.source)
    return PreparedData(train, test, report, scan.ids[leaked].tolist())


MIN_TRAIN_PER_CLASS = 5  # fewer readable training images than this: a named warning


def check_classes(train: ImageSet, test: ImageSet, source: str) -> list[str]:
    """Refuse class sets that make metrics meaningless; return warnings for thin ones (also logged).

    Errors: fewer than two classes with training images; a class with no readable training
    image (a test-only class folder, a label no training row carries, a class whose every file
    is unreadable): its model could never predict it, and macro averages would include it.
    Warnings: a class missing from the test split, a class with very few training images.
    """
    n_train, n_test = train.class_counts(), test.class_counts()
    names = train.class_names
    empty = [f"'{names[c]}' ({n_test[c]} test images)" for c in range(len(names)) if n_train[c] == 0]
    if empty:
        raise SourceError(
            f"{source}: class(es) {', '.join(empty)} have no readable training images, so no classifier can learn "
            "them and their metrics would be meaningless. Add training images, remove the class from every split, "
            "or (parquet) check the label column and data.class_names"
        )
    if len(names) < 2:
        raise SourceError(f"{source}: only one class ({names[0]!r}); a classifier needs at least two")
    warnings = []
    for c, name in enumerate(names):
        if n_test[c] == 0:
            warnings.append(
                f"class '{name}' has no test images: its test recall and F1 are undefined, and test macro averages "
                "score the model on the other classes only"
            )
        if n_train[c] < MIN_TRAIN_PER_CLASS:
            warnings.append(f"class '{name}' has only {n_train[c]} training image(s); its results will be noisy")
    for w in warnings:
        log.warning("%s: %s", source, w)
    return warnings


def prepared(cfg: DataConfig, seed: int = 0) -> PreparedData:
    """:func:`prepare_data`, once per process: the stages and the tasks a worker process runs share it.

    Decoding is cached on disk too, but the duplicate search and the split are not; a worker that
    runs many tasks of one study prepares its data only for the first.
    """
    key = f"{cfg.model_dump_json()}|{seed}"
    if key not in _PREPARED:
        _PREPARED.clear()  # one study's data at a time
        _PREPARED[key] = prepare_data(cfg, seed)
    return _PREPARED[key]


def write_image_folder(data: ImageSet, out: Path) -> int:
    """Write ``out/Training|Testing/<class>/<id>.png`` (+ ``out/masks/...`` when masks exist)."""
    folder = {"train": "Training", "test": "Testing"}
    for i in tqdm(range(len(data)), desc="write", unit="img", disable=None):
        rel = (
            Path(folder.get(str(data.splits[i]), "Training")) / data.class_names[data.labels[i]] / f"{data.ids[i]}.png"
        )
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.images[i]).save(out / rel)
        if data.masks is not None:
            (out / "masks" / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(data.masks[i].astype(np.uint8) * 255).save(out / "masks" / rel)
    return len(data)
