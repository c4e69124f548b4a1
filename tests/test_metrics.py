import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    brier_score_loss,
    f1_score,
    recall_score,
    roc_auc_score,
)

from cvkit.stats import classification_metrics


def test_metrics_match_scikit_learn_with_positive_label_zero():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    p_pos = np.clip(0.5 + 0.3 * (labels == 0) - 0.15 + rng.normal(0, 0.25, 200), 0, 1)
    probs = np.column_stack([p_pos, 1 - p_pos])  # class 0 is the positive class
    m = classification_metrics(labels, probs, positive=0)
    predicted = np.where(p_pos >= 0.5, 0, 1)
    assert np.isclose(m["auc"], roc_auc_score(labels == 0, p_pos))
    assert np.isclose(m["accuracy"], accuracy_score(labels, predicted))
    assert np.isclose(m["balanced_accuracy"], balanced_accuracy_score(labels, predicted))
    assert np.isclose(m["sensitivity"], recall_score(labels, predicted, pos_label=0))
    assert np.isclose(m["specificity"], recall_score(labels, predicted, pos_label=1))
    assert np.isclose(m["f1"], f1_score(labels, predicted, pos_label=0))
    assert np.isclose(m["brier"], brier_score_loss(labels == 0, p_pos))


def test_auc_is_nan_with_one_class():
    m = classification_metrics(np.zeros(4, int), np.tile([0.6, 0.4], (4, 1)), positive=1)
    assert np.isnan(m["auc"]) and np.isnan(m["sensitivity"]) and m["specificity"] == 1.0
