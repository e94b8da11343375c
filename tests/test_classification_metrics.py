"""Classification metrics on hand-made labels with values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synthaug.metrics.classification import classification_metrics, flat_metrics, ovr_auroc

LABELS = np.array([0, 0, 1, 1, 2, 2])
PRED = np.array([0, 1, 1, 1, 2, 0])


def one_hot_probs(pred: np.ndarray, c: int = 3, top: float = 0.6) -> np.ndarray:
    """Probability ``top`` on the predicted class, the rest shared equally."""
    probs = np.full((len(pred), c), (1 - top) / (c - 1))
    probs[np.arange(len(pred)), pred] = top
    return probs


def test_metrics_match_hand_computed_values() -> None:
    m = classification_metrics(one_hot_probs(PRED), LABELS, ("a", "b", "c"))
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    # recalls 1/2, 2/2, 1/2
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    # precision a 1/2, b 2/3, c 1/1; F1 a 0.5, b 0.8, c 2/3
    assert m["per_class"]["a"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2, "auroc": 0.625}
    )
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["b"]["f1"] == pytest.approx(0.8)
    assert m["per_class"]["c"]["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["cross_entropy"] == pytest.approx(-(4 * math.log(0.6) + 2 * math.log(0.2)) / 6)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_perfect_scores() -> None:
    probs = one_hot_probs(LABELS, top=0.9)
    m = classification_metrics(probs, LABELS, ("a", "b", "c"))
    assert m["accuracy"] == m["balanced_accuracy"] == m["macro_f1"] == m["auroc_macro"] == 1.0


def test_auroc_skips_a_class_absent_from_labels() -> None:
    labels = np.array([0, 0, 1, 1])  # class 2 never occurs
    probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1]])
    macro, per_class = ovr_auroc(probs, labels)
    assert per_class[:2] == [1.0, 1.0] and math.isnan(per_class[2])
    assert macro == 1.0
    m = classification_metrics(probs, labels, ("a", "b", "c"))
    assert m["macro_f1"] == 1.0  # averaged over present classes only
    assert math.isnan(m["per_class"]["c"]["auroc"])
    single = classification_metrics(probs[:2], labels[:2], ("a", "b", "c"))  # one class present
    assert math.isnan(single["auroc_macro"])


def test_flat_metrics_columns() -> None:
    row = flat_metrics(classification_metrics(one_hot_probs(PRED), LABELS, ("a", "b", "c")), "test")
    assert row["test_f1_b"] == pytest.approx(0.8)
    assert {
        "test_accuracy",
        "test_balanced_accuracy",
        "test_macro_f1",
        "test_cross_entropy",
        "test_auroc_macro",
    } <= set(row)


def test_class_names_must_match_columns() -> None:
    with pytest.raises(ValueError, match="class names"):
        classification_metrics(one_hot_probs(PRED), LABELS, ("a", "b"))
