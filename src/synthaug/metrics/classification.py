"""Classification metrics from predicted probabilities and true labels (scikit-learn)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.metrics import (
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

log = logging.getLogger(__name__)


def cross_entropy(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-12) -> float:
    """Mean negative log-probability of the true class; probs (N, C) rows sum to 1."""
    p = np.clip(probs[np.arange(len(labels)), labels], eps, 1.0)
    return float(-np.log(p).mean())


def ovr_auroc(probs: np.ndarray, labels: np.ndarray) -> tuple[float, list[float]]:
    """Macro one-vs-rest AUROC over the classes present in ``labels`` (absent classes: NaN, skipped).

    A class that is absent (or the only class present) has no negatives or no positives, so its
    AUROC is undefined; the macro average runs over the classes where it is defined.
    """
    per_class: list[float] = []
    for c in range(probs.shape[1]):
        positive = labels == c
        if positive.all() or not positive.any():
            per_class.append(float("nan"))
            continue
        per_class.append(float(roc_auc_score(positive, probs[:, c])))
    defined = [a for a in per_class if not np.isnan(a)]
    return (float(np.mean(defined)) if defined else float("nan")), per_class


def classification_metrics(
    probs: np.ndarray, labels: np.ndarray, class_names: list[str] | tuple[str, ...]
) -> dict[str, Any]:
    """Every metric the study reports.

    probs: (N, C) class probabilities; labels: (N,) int in [0, C). Returns scalars (accuracy,
    balanced_accuracy, macro_f1, cross_entropy, auroc_macro, n), ``per_class`` (precision,
    recall, f1, support, auroc per class name) and ``confusion`` (C x C list, rows = true class).
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    c = probs.shape[1]
    if c != len(class_names):
        raise ValueError(f"probabilities have {c} columns but there are {len(class_names)} class names")
    pred = probs.argmax(axis=1)
    classes = list(range(c))
    prec, rec, f1, support = precision_recall_fscore_support(labels, pred, labels=classes, zero_division=0)
    auroc, auroc_per_class = ovr_auroc(probs, labels)
    present = np.bincount(labels, minlength=c) > 0
    return {
        "n": len(labels),
        "accuracy": float(np.mean(pred == labels)) if len(labels) else float("nan"),
        # Balanced accuracy (mean recall) and macro-F1 average over the classes present in the labels.
        "balanced_accuracy": float(np.mean(rec[present])) if present.any() else float("nan"),
        "macro_f1": float(np.mean(f1[present])) if present.any() else float("nan"),
        "cross_entropy": cross_entropy(probs, labels),
        "auroc_macro": auroc,
        "per_class": {
            name: {
                "precision": float(prec[i]),
                "recall": float(rec[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
                "auroc": auroc_per_class[i],
            }
            for i, name in enumerate(class_names)
        },
        "confusion": confusion_matrix(labels, pred, labels=classes).tolist(),
    }


def flat_metrics(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    """Scalar metrics and per-class F1 as flat columns: ``test_accuracy``, ``test_f1_<class>``, ..."""
    keys = ("accuracy", "balanced_accuracy", "macro_f1", "cross_entropy", "auroc_macro")
    row = {f"{prefix}_{k}": float(metrics[k]) for k in keys}
    row.update({f"{prefix}_f1_{name}": float(v["f1"]) for name, v in metrics["per_class"].items()})
    return row
