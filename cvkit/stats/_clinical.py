"""Per-fold clinical scores of the named positive class: calibration, net benefit, operating points.

Each function scores one set of predictions (one job's test fold, or its inner validation part for
a threshold choice); the comparison turns the per-fold scores into corrected intervals and paired
differences exactly as it does for AUC. All take ``is_positive`` (bool per sample) and ``score``
(the predicted probability of the positive class).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

# The pre-declared thresholds of the paired net-benefit differences, and the operating-point rule,
# when the user names none.
DEFAULT_NB_THRESHOLDS = (0.1, 0.2, 0.3)
DEFAULT_OPERATING_POINT = "sens@spec=0.90"
CALIBRATION_METRICS = ("cal_intercept", "cal_slope", "ece", "brier")
OPERATING_METRICS = ("sensitivity", "specificity", "ppv", "npv")
# The equal-width bins of the expected calibration error (and of the reliability diagram).
ECE_BINS = 10
# Probabilities are clipped this far from 0 and 1 before the logit: a saturated sigmoid gives
# exactly 0 or 1, whose logit is infinite.
_CLIP = 1e-6


def _logit(score) -> np.ndarray:
    p = np.clip(np.asarray(score, dtype=np.float64), _CLIP, 1 - _CLIP)
    return np.log(p / (1 - p))


def _newton_logistic(y, design, offset, *, max_iter: int = 50, tol: float = 1e-10) -> np.ndarray | None:
    """Maximum-likelihood logistic regression of ``y`` on the columns of ``design`` with a fixed
    ``offset`` (Newton-Raphson). None when it does not converge (separation, one class)."""
    beta = np.zeros(design.shape[1])
    for _ in range(max_iter):
        eta = design @ beta + offset
        mu = expit(eta)
        w = mu * (1 - mu)
        hessian = design.T @ (design * w[:, None])
        try:
            step = np.linalg.solve(hessian, design.T @ (y - mu))
        except np.linalg.LinAlgError:
            return None
        beta = beta + step
        if not np.all(np.isfinite(beta)) or np.max(np.abs(beta)) > 1e3:
            return None
        if np.max(np.abs(step)) < tol:
            return beta
    return None


def calibration_scores(is_positive, score, *, bins: int = ECE_BINS) -> dict[str, float]:
    """Calibration of one set of predictions of the positive class.

    - ``cal_intercept``: calibration-in-the-large, ``a`` of logit P(y) = a + logit(p) (slope fixed
      at 1); 0 when the predictions are right on average, > 0 when they are too low.
    - ``cal_slope``: ``b`` of logit P(y) = a + b logit(p); 1 when the spread is right, < 1 when
      the predictions are too extreme (overconfident), > 1 when too modest.
    - ``ece``: expected calibration error over ``bins`` equal-width bins, sum of n_b/n |mean p_b -
      share of positives_b| (biased upward on small test folds: compare models, not to 0).
    - ``brier``: mean of (p - y)^2.

    Intercept and slope are NaN when the fold holds one class or the fit does not converge.

    Parameters
    ----------
    is_positive : array of bool
        Whether each sample is of the positive class.
    score : array of float
        The predicted probability of the positive class per sample, in [0, 1] (clipped 1e-6 from
        0 and 1 before the logit).
    bins : int, default=ECE_BINS
        Equal-width bins over [0, 1] of the expected calibration error (10).

    Returns
    -------
    dict of str to float
        ``cal_intercept``, ``cal_slope``, ``ece`` and ``brier``.
    """
    y = np.asarray(is_positive, dtype=np.float64)
    p = np.asarray(score, dtype=np.float64)
    lp = _logit(p)
    both = 0 < y.sum() < len(y)
    ones = np.ones((len(y), 1))
    intercept = _newton_logistic(y, ones, lp) if both else None
    slope = _newton_logistic(y, np.column_stack([ones, lp]), np.zeros(len(y))) if both else None
    which = np.clip(np.digitize(p, np.linspace(0, 1, bins + 1)) - 1, 0, bins - 1)
    ece = sum(
        np.sum(which == b) / len(p) * abs(p[which == b].mean() - y[which == b].mean())
        for b in range(bins)
        if np.any(which == b)
    )
    return dict(
        cal_intercept=float("nan") if intercept is None else float(intercept[0]),
        cal_slope=float("nan") if slope is None else float(slope[1]),
        ece=float(ece),
        brier=float(np.mean((p - y) ** 2)),
    )


def net_benefit(is_positive, score, thresholds) -> np.ndarray:
    """Net benefit of treating the samples with ``score >= t``, at each threshold ``t``.

    Vickers & Elkin (2006): TP/n - FP/n * t / (1 - t).

    Parameters
    ----------
    is_positive : array of bool
        Whether each sample is of the positive class.
    score : array of float
        The predicted probability of the positive class per sample.
    thresholds : sequence of float
        The risk thresholds t, in [0, 1): a false positive weighs t / (1 - t) true positives.

    Returns
    -------
    numpy.ndarray
        The net benefit at each threshold, in true positives per sample.
    """
    y = np.asarray(is_positive, dtype=bool)
    s = np.asarray(score, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)
    treated = s[None, :] >= t[:, None]
    tp = np.sum(treated & y[None, :], axis=1) / len(y)
    fp = np.sum(treated & ~y[None, :], axis=1) / len(y)
    return tp - fp * t / (1 - t)


def treat_all_net_benefit(is_positive, thresholds) -> np.ndarray:
    """Net benefit of treating everyone, at each threshold ``t``.

    It is prevalence - (1 - prevalence) * t / (1 - t). Treating no one has net benefit 0 at every
    threshold.

    Parameters
    ----------
    is_positive : array of bool
        Whether each sample is of the positive class (their share is the prevalence).
    thresholds : sequence of float
        The risk thresholds t, in [0, 1).

    Returns
    -------
    numpy.ndarray
        The net benefit of treating everyone at each threshold.
    """
    prevalence = float(np.mean(np.asarray(is_positive, dtype=bool)))
    t = np.asarray(thresholds, dtype=np.float64)
    return prevalence - (1 - prevalence) * t / (1 - t)


@dataclass(frozen=True)
class OperatingRule:
    """How a threshold is chosen: ``sens@spec`` (the highest sensitivity with specificity >=
    ``target``), ``spec@sens`` (the reverse), ``youden`` (max sensitivity + specificity - 1) or
    ``fixed`` (``target`` itself)."""

    kind: str
    target: float = float("nan")

    @property
    def text(self) -> str:
        return self.kind if self.kind == "youden" else f"{self.kind}={self.target:g}"


OPERATING_RULES = ("sens@spec", "spec@sens", "youden", "fixed")
_RULE = re.compile(r"^(sens@spec|spec@sens|fixed)=([0-9]*\.?[0-9]+)$|^(youden)$")


def parse_operating_point(text: str) -> OperatingRule:
    """Read an operating-point rule as an :class:`OperatingRule`.

    ``sens@spec=0.90``, ``spec@sens=0.90``, ``youden`` or ``fixed=0.5``; a ValueError names the
    accepted forms otherwise.

    Parameters
    ----------
    text : str
        The rule as written on the command line (case and surrounding spaces ignored); the number
        of ``sens@spec``, ``spec@sens`` and ``fixed`` must lie strictly between 0 and 1.

    Returns
    -------
    OperatingRule
        Its ``kind`` and, but for ``youden``, its ``target``.

    Raises
    ------
    ValueError
        Any other form (the message names the accepted ones), or a number outside (0, 1).
    """
    match = _RULE.match(text.strip().lower())
    if match is None:
        raise ValueError(
            f"--operating-point {text!r}: write sens@spec=0.90, spec@sens=0.90, youden or fixed=0.5"
        )
    if match.group(3):
        return OperatingRule("youden")
    target = float(match.group(2))
    if not 0 < target < 1:
        raise ValueError(f"--operating-point {text!r}: the number must lie strictly between 0 and 1")
    return OperatingRule(match.group(1), target)


def choose_threshold(rule: OperatingRule, is_positive, score) -> float:
    """The threshold ``rule`` picks on these predictions.

    Call it with *validation* predictions only: a threshold chosen on the test fold overstates its
    sensitivity and specificity. A sample is called positive when ``score >= threshold``. The
    candidates are the observed scores (and 1 + a hair, calling no one positive); ties go to the
    higher threshold. NaN when the predictions hold one class (no sensitivity or specificity to
    target).

    Parameters
    ----------
    rule : OperatingRule
        How to choose (``parse_operating_point``); a ``fixed`` rule returns its target whatever the
        predictions.
    is_positive : array of bool
        Whether each sample is of the positive class.
    score : array of float
        The predicted probability of the positive class per sample.

    Returns
    -------
    float
        The threshold, or NaN when the predictions hold one class (but for a ``fixed`` rule).
    """
    if rule.kind == "fixed":
        return float(rule.target)
    y = np.asarray(is_positive, dtype=bool)
    s = np.asarray(score, dtype=np.float64)
    if y.all() or not y.any():
        return float("nan")
    candidates = np.unique(np.append(s, np.nextafter(1.0, 2.0)))
    called = s[None, :] >= candidates[:, None]
    sensitivity = called[:, y].mean(axis=1)
    specificity = (~called[:, ~y]).mean(axis=1)
    if rule.kind == "youden":
        value = sensitivity + specificity
    elif rule.kind == "sens@spec":
        value = np.where(specificity >= rule.target - 1e-12, sensitivity, -np.inf)
    else:
        value = np.where(sensitivity >= rule.target - 1e-12, specificity, -np.inf)
    best = np.flatnonzero(value == value.max())
    return float(candidates[best[-1]])


def operating_scores(is_positive, score, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, PPV and NPV when ``score >= threshold`` is called positive.

    NaN where the denominator is empty, or the threshold is NaN.

    Parameters
    ----------
    is_positive : array of bool
        Whether each sample is of the positive class.
    score : array of float
        The predicted probability of the positive class per sample.
    threshold : float
        The score from which a sample is called positive (``choose_threshold``); NaN gives NaN
        scores.

    Returns
    -------
    dict of str to float
        ``sensitivity``, ``specificity``, ``ppv`` and ``npv``, each a share in [0, 1] or NaN.
    """
    y = np.asarray(is_positive, dtype=bool)
    called = np.asarray(score, dtype=np.float64) >= threshold

    def share(hit, of) -> float:
        return float(np.mean(hit[of])) if np.any(of) and not np.isnan(threshold) else float("nan")

    return dict(
        sensitivity=share(called, y),
        specificity=share(~called, ~y),
        ppv=share(y, called),
        npv=share(~y, ~called),
    )


def per_class_scores(labels, probs) -> dict[str, np.ndarray]:
    """One-vs-rest scores of each class of a 3+ class problem, on one set of predictions.

    ``auc`` (class c's probability ranking c against the rest), ``sensitivity`` (recall of c) and
    ``specificity`` (share of the other classes not called c), the predicted class being the most
    probable one. Each is an array over classes, NaN for a class absent from ``labels`` (or, for
    AUC and specificity, when every sample is of that class).

    Parameters
    ----------
    labels : array of int
        The true class index (0 to n_classes - 1) of each sample.
    probs : array of float, shape (n_samples, n_classes)
        The predicted probability of each class per sample; column c is class c's.

    Returns
    -------
    dict of str to numpy.ndarray
        ``auc``, ``sensitivity`` and ``specificity``, each with one value per class.
    """
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    predicted = probs.argmax(axis=1)
    n_classes = probs.shape[1]
    auc, sensitivity, specificity = (np.full(n_classes, np.nan) for _ in range(3))
    for c in range(n_classes):
        is_c = labels == c
        if is_c.any():
            sensitivity[c] = np.mean(predicted[is_c] == c)
        if (~is_c).any():
            specificity[c] = np.mean(predicted[~is_c] != c)
        if is_c.any() and (~is_c).any():
            auc[c] = roc_auc_score(is_c, probs[:, c])
    return dict(auc=auc, sensitivity=sensitivity, specificity=specificity)


RECALIBRATION_METHODS = ("none", "platt", "isotonic")


def fit_recalibration(method: str, is_positive, score):
    """A recalibration of the positive class's probability, fitted on (validation) predictions.

    It maps a model's probability of the positive class to a recalibrated one, fitted on these
    (validation) predictions: ``platt`` (logistic regression on the logit, Platt 1999) or
    ``isotonic`` (monotone step function; scikit-learn's ``IsotonicRegression``). None when the
    predictions hold one class or the fit does not converge (leave those probabilities as they
    are).

    Parameters
    ----------
    method : {"none", "platt", "isotonic"}
        The recalibration; ``none`` returns None.
    is_positive : array of bool
        Whether each validation sample is of the positive class.
    score : array of float
        The model's predicted probability of the positive class per validation sample.

    Returns
    -------
    callable or None
        A function from an array of probabilities to the recalibrated ones, in [0, 1]; None for
        ``none``, for one class, or for a Platt fit that does not converge.

    Raises
    ------
    ValueError
        A method other than those of ``RECALIBRATION_METHODS``.
    """
    if method not in RECALIBRATION_METHODS:
        raise ValueError(f"--calibrate {method!r}: choose one of {', '.join(RECALIBRATION_METHODS)}")
    y = np.asarray(is_positive, dtype=np.float64)
    if method == "none" or not 0 < y.sum() < len(y):
        return None
    if method == "platt":
        lp = _logit(score)
        beta = _newton_logistic(y, np.column_stack([np.ones(len(y)), lp]), np.zeros(len(y)))
        if beta is None:
            return None
        return lambda s: expit(beta[0] + beta[1] * _logit(s))
    from sklearn.isotonic import IsotonicRegression

    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
        np.asarray(score, dtype=np.float64), y
    )
    return lambda s: fitted.predict(np.asarray(s, dtype=np.float64))
