"""Per-fold classification metrics for the named positive class."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

METRICS = ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1", "brier")
# Metrics where higher is better: the ones a verdict may be based on.
VERDICT_METRICS = ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1")
# How each metric is named wherever people read it: tables, sentences, figure axes.
METRIC_LABELS = dict(
    auc="AUC",
    accuracy="accuracy",
    balanced_accuracy="balanced acc.",
    sensitivity="sensitivity",
    specificity="specificity",
    f1="F1",
    brier="Brier",
    cal_intercept="calibration intercept",
    cal_slope="calibration slope",
    ece="ECE",
    ppv="PPV",
    npv="NPV",
    net_benefit="net benefit",
)


def metric_label(metric: str) -> str:
    """How ``metric`` is named for readers (a name without a label as it is)."""
    return METRIC_LABELS.get(metric, metric)


def predict_classes(probs, positive: int) -> np.ndarray:
    """The one prediction rule of every class-based metric: the most probable class (for two
    classes, ``positive`` when its probability is >= 0.5, so a tie at 0.5 goes to the positive
    class). ``probs`` is ``(..., n_classes)``; returns class indices of shape ``probs.shape[:-1]``."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape[-1] == 2:
        return np.where(probs[..., positive] >= 0.5, positive, 1 - positive)
    return probs.argmax(axis=-1)


def classification_metrics(labels, probs, positive: int) -> dict[str, float]:
    """AUC, accuracy, balanced accuracy, sensitivity, specificity, F1 and Brier score of one set
    of predictions.

    ``probs`` is ``(n, n_classes)``; the predicted class is the most probable one (for two classes,
    probability of ``positive`` >= 0.5). Sensitivity, specificity, F1 and the Brier score treat
    ``positive`` against all other classes; AUC is that of the positive class's probability (NaN
    if only one class). Lower is better only for the Brier score.
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    is_positive = labels == positive
    predicted = predict_classes(probs, positive)
    said_positive = predicted == positive
    recalls = [np.mean(predicted[labels == c] == c) for c in np.unique(labels)]
    both = is_positive.any() and (~is_positive).any()
    return dict(
        auc=float(roc_auc_score(is_positive, probs[:, positive])) if both else float("nan"),
        accuracy=float(np.mean(predicted == labels)),
        balanced_accuracy=float(np.mean(recalls)),
        sensitivity=float(np.mean(said_positive[is_positive])) if is_positive.any() else float("nan"),
        specificity=float(np.mean(~said_positive[~is_positive])) if (~is_positive).any() else float("nan"),
        f1=_f1(is_positive, said_positive),
        brier=float(np.mean((probs[:, positive] - is_positive) ** 2)),
    )


def _f1(is_positive, said_positive) -> float:
    tp = np.sum(is_positive & said_positive)
    wrong = np.sum(is_positive != said_positive)
    return float(2 * tp / (2 * tp + wrong)) if tp + wrong else float("nan")
