"""One grid cell: a model trained on a cell's real subset expanded by its policies, then tested.

A cell is complete when ``metrics.json`` in its folder exists: it is written last and
atomically, so a cell killed mid-training has none and runs again from the start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from synthaug.augment import PolicySpec, build_policy, online_transform, training_plan
from synthaug.classifiers.evaluate import predict_proba
from synthaug.classifiers.train import train_classifier
from synthaug.config.classifier import ClassifierConfig
from synthaug.config.policies import policies_json, policies_label
from synthaug.data.cells import Cell
from synthaug.data.imageset import ImageSet
from synthaug.device import pick_device
from synthaug.io import atomic_path, write_json
from synthaug.metrics.classification import classification_metrics, flat_metrics
from synthaug.rundir import CELL_METRICS, CONFUSION, cell_id, normalize_policies

log = logging.getLogger(__name__)


def run_cell(
    pool: ImageSet,
    test: ImageSet,
    cfg: ClassifierConfig,
    policy_specs: Sequence[PolicySpec | str | dict[str, Any]],
    cell: Cell,
    out_dir: str | Path,
    device: str = "auto",
) -> dict[str, Any]:
    """Train and evaluate one cell; write metrics.json, history.csv, confusion.csv, best.pt; return its row.

    ``pool`` is the training split; ``cell`` says which of its images train and validate.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    specs = normalize_policies(policy_specs)
    dev = pick_device(device)
    real, val = cell.fit(pool), cell.val(pool)
    policies = [build_policy(s) for s in specs]
    train, schedule = training_plan(real, policies, cell.seed, cell)
    model, result = train_classifier(
        cfg.model, cfg.train, train, val, out, cell.seed, dev, online_transform(policies), schedule
    )
    test_m = classification_metrics(
        predict_proba(model, test, cfg.train.eval_batch_size, dev), test.labels, test.class_names
    )
    val_m = classification_metrics(
        predict_proba(model, val, cfg.train.eval_batch_size, dev), val.labels, val.class_names
    )
    row: dict[str, Any] = {
        "cell_id": cell_id(cfg.model.label(), specs, cell.fraction, cell.seed),
        "model": cfg.model.label(),
        "policy": policies_label(specs),
        "policy_spec": policies_json(specs),
        "real_fraction": float(cell.fraction),
        "seed": int(cell.seed),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "wall_time_s": time.perf_counter() - start,
        "train_images_per_s": result.train_images_per_s,
        "n_real": len(real),
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(test),
        **flat_metrics(test_m, "test"),
        **flat_metrics(val_m, "val"),
    }
    _write_confusion(out / CONFUSION, test_m["confusion"], test.class_names)
    config = {"classifier": cfg.model_dump(mode="json"), "policies": [s.model_dump() for s in specs]}
    write_json(out / CELL_METRICS, {"row": row, "test": test_m, "val": val_m, "config": config})  # written last
    log.info("cell %s: test acc %.3f in %.0f s", row["cell_id"], row["test_accuracy"], row["wall_time_s"])
    return row


def _write_confusion(path: Path, confusion: list[list[int]], class_names: Sequence[str]) -> None:
    names = list(class_names)
    frame = pd.DataFrame(confusion, index=pd.Index(names, name="true"), columns=names)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp)
