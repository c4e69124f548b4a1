"""Sample-level tests: two *trained models* compared on the same samples.

McNemar, DeLong and the paired bootstrap answer "do these two fitted models differ on these
samples?". They ignore training (seed) variance, so they never decide a verdict alone: two seeds
of the same ResNet-18 already differ at McNemar p < 0.01 on BreastMNIST. Arguments named ``a`` are
the baseline, ``b`` the variant; every difference is b - a.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

METHODS = ("midp", "exact", "chi2")
BOOTSTRAP_METRICS = ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1")


@dataclass(frozen=True)
class McNemarResult:
    statistic: float
    pvalue: float
    b: int  # baseline right, variant wrong
    c: int  # baseline wrong, variant right
    method: str


@dataclass(frozen=True)
class DeLongResult:
    auc_a: float
    auc_b: float
    difference: float
    se: float
    statistic: float
    pvalue: float


@dataclass(frozen=True)
class BootstrapResult:
    estimate: float
    low: float
    high: float
    se: float
    confidence: float
    method: str
    n_resamples: int


def mcnemar(y_true, pred_a, pred_b, method: str = "midp") -> McNemarResult:
    """McNemar's test on paired predictions. Use it per repeat, never on repeats pooled together
    (the same samples would count several times). No disagreement gives p = 1.

    Parameters
    ----------
    y_true : array, shape (n,)
        The true classes.
    pred_a : array, shape (n,)
        Model a's predicted classes.
    pred_b : array, shape (n,)
        Model b's predicted classes, on the same samples.
    method : {"midp", "exact", "chi2"}, default="midp"
        The mid-p test (Fagerland et al. 2013), the exact binomial, or chi-squared with Edwards'
        continuity correction.

    Returns
    -------
    McNemarResult
        ``statistic``, ``pvalue``, the discordant counts ``b`` (a right, b wrong) and ``c`` (a
        wrong, b right), and ``method``.

    Raises
    ------
    ValueError
        An unknown method, or arrays of different lengths.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    y_true, pred_a, pred_b = (np.asarray(v).ravel() for v in (y_true, pred_a, pred_b))
    if not len(y_true) == len(pred_a) == len(pred_b):
        raise ValueError("y_true, pred_a and pred_b must have the same length")
    right_a, right_b = pred_a == y_true, pred_b == y_true
    b = int(np.sum(right_a & ~right_b))
    c = int(np.sum(~right_a & right_b))
    n = b + c
    if n == 0:  # the models never disagree: no evidence of any difference
        return McNemarResult(0.0, 1.0, b, c, method)
    if method == "chi2":
        statistic = max(0, abs(b - c) - 1) ** 2 / n
        return McNemarResult(float(statistic), float(stats.chi2.sf(statistic, 1)), b, c, method)
    k = min(b, c)
    if method == "exact":
        pvalue = 2 * stats.binom.cdf(k, n, 0.5)
    else:
        pvalue = 2 * (stats.binom.cdf(k, n, 0.5) - stats.binom.pmf(k, n, 0.5) / 2)
    return McNemarResult(float(k), float(min(1.0, pvalue)), b, c, method)


def delong(y_true, score_a, score_b) -> DeLongResult:
    """DeLong's test for two correlated AUCs (DeLong et al. 1988), in the O(n log n) midrank
    form of Sun & Xu (2014).

    Parameters
    ----------
    y_true : array, shape (n,)
        True/1 for the positive class.
    score_a : array of float, shape (n,)
        Scores of the positive class by model a (the baseline).
    score_b : array of float, shape (n,)
        Scores of the positive class by model b (the variant), on the same samples.

    Returns
    -------
    DeLongResult
        ``auc_a``, ``auc_b``, their ``difference`` (b - a), its ``se``, the ``statistic`` and
        two-sided ``pvalue``.

    Raises
    ------
    ValueError
        Fewer than two samples of either class.
    """
    positive = _positive_mask(y_true)
    if min(positive.sum(), (~positive).sum()) < 2:
        raise ValueError(
            "DeLong's test needs at least 2 positive and 2 negative samples, "
            f"got {positive.sum()} and {(~positive).sum()}"
        )
    scores = np.vstack([np.asarray(score_a, dtype=np.float64), np.asarray(score_b, dtype=np.float64)])
    x, y = scores[:, positive], scores[:, ~positive]
    m, n = x.shape[1], y.shape[1]
    tx = stats.rankdata(x, axis=1)
    ty = stats.rankdata(y, axis=1)
    tz = stats.rankdata(np.hstack([x, y]), axis=1)
    auc = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:, :m] - tx) / n  # per positive: share of negatives it outranks
    v01 = 1 - (tz[:, m:] - ty) / m  # per negative: share of positives that outrank it
    s = np.cov(v10) / m + np.cov(v01) / n
    variance = s[0, 0] + s[1, 1] - 2 * s[0, 1]
    difference = float(auc[1] - auc[0])
    se = float(np.sqrt(max(variance, 0.0)))
    if se == 0:
        z, p = (0.0, 1.0) if difference == 0 else (float(np.sign(difference) * np.inf), 0.0)
    else:
        z = difference / se
        p = float(2 * stats.norm.sf(abs(z)))
    return DeLongResult(float(auc[0]), float(auc[1]), difference, se, float(z), p)


def bootstrap_diff(
    y_true,
    score_a,
    score_b,
    metric: str = "auc",
    n_resamples: int = 10000,
    method: str = "bca",
    stratified: bool = True,
    seed: int = 0,
    confidence: float = 0.95,
    threshold: float = 0.5,
    labels=None,
    predicted=None,
) -> BootstrapResult:
    """Paired bootstrap CI of metric(b) - metric(a) over samples.

    A resample draws sample indices once, shared by both models and every repeat, and the metric
    is averaged over repeats. Vectorised: the resamples are weight vectors and the AUC is computed
    from cumulative weights over pre-sorted scores.

    Parameters
    ----------
    y_true : array, shape (n,)
        True/1 for the positive class.
    score_a : array of float, shape (n,) or (repeats, n)
        Probabilities of the positive class by model a, one row per CV repeat (each covering
        every sample once).
    score_b : array of float, same shape as score_a
        The same by model b.
    metric : {"auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1"}, default="auc"
        The metric whose difference is bootstrapped.
    n_resamples : int, default=10000
        Bootstrap resamples.
    method : {"bca", "percentile"}, default="bca"
        The interval: bias-corrected and accelerated, or percentile.
    stratified : bool, default=True
        Resample within each class.
    seed : int, default=0
        Seed of the resamples.
    confidence : float, default=0.95
        Level of the interval.
    threshold : float, default=0.5
        A class-based metric predicts the positive class at ``score >= threshold``, unless
        ``predicted`` is given.
    labels : array or None, default=None
        The true classes, with ``predicted`` (three or more classes).
    predicted : (array, array) or None, default=None
        The predicted classes of a and of b, shaped like the scores (the argmax rule of
        ``classification_metrics``).

    Returns
    -------
    BootstrapResult
        The ``estimate`` (b - a), the interval ``low``/``high``, ``se``, ``confidence``,
        ``method`` and ``n_resamples``.

    Raises
    ------
    ValueError
        An unknown metric or method, or scores that do not match the labels.
    """
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"metric must be one of {', '.join(BOOTSTRAP_METRICS)}, got {metric!r}")
    positive = _positive_mask(y_true)
    a, b = (np.atleast_2d(np.asarray(s, dtype=np.float64)) for s in (score_a, score_b))
    if a.shape != b.shape or a.shape[1] != len(positive):
        raise ValueError(f"scores of shape {a.shape} and {b.shape} do not match {len(positive)} labels")
    sign = np.repeat([-1.0, 1.0], len(a)) / len(a)  # mean over repeats of variant minus baseline
    if predicted is not None:
        predicted = np.concatenate([np.atleast_2d(np.asarray(p)) for p in predicted])
    classes = _Classes(positive, labels, predicted, np.concatenate([a, b]), threshold)
    statistic = _WeightedStatistic(positive, np.concatenate([a, b]), sign, metric, classes)
    return _bootstrap(statistic, classes.strata, n_resamples, method, stratified, seed, confidence)


def bootstrap_score(
    y_true,
    score,
    metric: str = "auc",
    n_resamples: int = 10000,
    method: str = "percentile",
    stratified: bool = True,
    seed: int = 0,
    confidence: float = 0.95,
    threshold: float = 0.5,
    labels=None,
    predicted=None,
) -> BootstrapResult:
    """Bootstrap CI of one model's metric over samples (e.g. on a fixed hold-out set); ``score``
    is ``(n,)`` or ``(repeats, n)`` positive-class probabilities, the metric averaged over rows.
    ``labels`` and ``predicted`` (classes shaped like ``score``) as in ``bootstrap_diff``."""
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"metric must be one of {', '.join(BOOTSTRAP_METRICS)}, got {metric!r}")
    positive = _positive_mask(y_true)
    rows = np.atleast_2d(np.asarray(score, dtype=np.float64))
    if predicted is not None:
        predicted = np.atleast_2d(np.asarray(predicted))
    classes = _Classes(positive, labels, predicted, rows, threshold)
    statistic = _WeightedStatistic(positive, rows, np.full(len(rows), 1 / len(rows)), metric, classes)
    return _bootstrap(statistic, classes.strata, n_resamples, method, stratified, seed, confidence)


def _bootstrap(statistic, strata, n_resamples, method, stratified, seed, confidence) -> BootstrapResult:
    if method not in ("bca", "percentile"):
        raise ValueError(f"method must be 'bca' or 'percentile', got {method!r}")
    rng = np.random.default_rng(seed)
    weights = _resample_weights(strata, statistic.positive, n_resamples, stratified, rng)
    replicates = statistic(weights)
    estimate = float(statistic(np.ones((1, len(strata))))[0])
    alpha = (1 - confidence) / 2
    if method == "percentile":
        low, high = np.quantile(replicates, [alpha, 1 - alpha])
    else:
        low, high = _bca_interval(replicates, estimate, statistic.jackknife(), alpha)
    return BootstrapResult(
        estimate, float(low), float(high), float(replicates.std(ddof=1)), confidence, method, n_resamples
    )


class _Classes:
    """What a class-based metric needs per row of scores: which samples each row calls positive and
    which it gets right, and the true classes (strata of the stratified resampling)."""

    def __init__(self, positive, labels, predicted, rows, threshold):
        if predicted is None:  # two classes, the positive one from a threshold on its probability
            self.said_positive = rows >= threshold
            self.correct = self.said_positive == positive
            self.strata = (~positive).astype(np.int64)  # stratum 0: the positive class
            return
        labels = np.asarray(labels).ravel()
        if labels.shape != positive.shape or predicted.shape != rows.shape:
            raise ValueError("labels must match y_true, and predicted classes the scores' shape")
        positive_class = labels[positive][0]
        if not (labels[positive] == positive_class).all():
            raise ValueError("y_true must mark exactly the samples whose label is the positive class")
        self.said_positive = predicted == positive_class
        self.correct = predicted == labels
        self.strata = np.unique(labels, return_inverse=True)[1].ravel()


class _WeightedStatistic:
    """sign @ metric(rows): a weighted sum of per-row metrics (e.g. variant minus baseline,
    averaged over repeats), for a batch of sample-weight vectors."""

    def __init__(self, positive, rows, sign, metric, classes: _Classes):
        self.positive, self.metric = positive, metric
        self.scores = rows
        self.sign = sign
        if metric == "auc":
            x, y = self.scores[:, positive], self.scores[:, ~positive]
            order = np.argsort(y, axis=1, kind="stable")
            self.neg_order = order
            sorted_y = np.take_along_axis(y, order, axis=1)
            # For each positive: how many sorted negatives lie strictly below it, and at or below.
            self.below = np.array([np.searchsorted(row, xi, side="left") for row, xi in zip(sorted_y, x)])
            self.upto = np.array([np.searchsorted(row, xi, side="right") for row, xi in zip(sorted_y, x)])
        else:
            self.said_positive, self.correct = classes.said_positive, classes.correct  # (rows, n)
            self.strata = classes.strata

    def __call__(self, weights):
        """weights: (B, n) non-negative sample multiplicities. Returns (B,) differences."""
        pos, neg = self.positive, ~self.positive
        if self.metric == "auc":
            wx, wy = weights[:, pos], weights[:, neg]
            rows = []
            for row in range(len(self.scores)):
                cum = np.zeros((len(weights), wy.shape[1] + 1))
                np.cumsum(wy[:, self.neg_order[row]], axis=1, out=cum[:, 1:])
                # weight of negatives below each positive, ties counting one half
                beaten = (cum[:, self.below[row]] + cum[:, self.upto[row]]) / 2
                rows.append((wx * beaten).sum(axis=1) / (wx.sum(axis=1) * wy.sum(axis=1)))
            values = np.array(rows)
        else:
            values = np.array([self._rate(weights, *row) for row in zip(self.said_positive, self.correct)])
        return self.sign @ values

    def _rate(self, weights, said_positive, correct):
        pos, neg = self.positive, ~self.positive
        if self.metric == "f1":
            tp = weights[:, pos] @ said_positive[pos]
            wrong = weights @ (said_positive != pos)
            return 2 * tp / (2 * tp + wrong)
        if self.metric == "sensitivity":
            return (weights[:, pos] @ said_positive[pos]) / weights[:, pos].sum(axis=1)
        if self.metric == "specificity":
            return (weights[:, neg] @ ~said_positive[neg]) / weights[:, neg].sum(axis=1)
        if self.metric == "balanced_accuracy":  # mean recall over the classes
            members = [self.strata == k for k in np.unique(self.strata)]
            recalls = [(weights[:, m] @ correct[m]) / weights[:, m].sum(axis=1) for m in members]
            return np.mean(recalls, axis=0)
        return (weights @ correct) / weights.sum(axis=1)

    def jackknife(self):
        """Leave-one-sample-out values of the statistic (the sample left out of every repeat)."""
        n = len(self.positive)
        weights = np.ones((n, n)) - np.eye(n)
        return self(weights)


def _resample_weights(strata, positive, n_resamples, stratified, rng):
    n = len(strata)
    weights = np.zeros((n_resamples, n))
    groups = [np.flatnonzero(strata == k) for k in np.unique(strata)] if stratified else [np.arange(n)]
    rows = np.arange(n_resamples)[:, None]
    for members in groups:
        draws = members[rng.integers(0, len(members), size=(n_resamples, len(members)))]
        weights += np.bincount((rows * n + draws).ravel(), minlength=n_resamples * n).reshape(n_resamples, n)
    if not stratified:  # a resample without one class has no AUC: redraw is biased, so drop it
        ok = (weights[:, positive].sum(1) > 0) & (weights[:, ~positive].sum(1) > 0)
        weights = weights[ok]
    return weights


def _bca_interval(replicates, estimate, jackknife, alpha):
    """Bias-corrected and accelerated percentile interval (Efron 1987)."""
    share_below = (np.sum(replicates < estimate) + 0.5 * np.sum(replicates == estimate)) / len(replicates)
    z0 = stats.norm.ppf(np.clip(share_below, 1e-10, 1 - 1e-10))
    deviation = jackknife.mean() - jackknife
    denominator = 6 * np.sum(deviation**2) ** 1.5
    acceleration = np.sum(deviation**3) / denominator if denominator > 0 else 0.0
    quantiles = []
    for z_alpha in stats.norm.ppf([alpha, 1 - alpha]):
        shifted = z0 + (z0 + z_alpha) / (1 - acceleration * (z0 + z_alpha))
        quantiles.append(stats.norm.cdf(shifted))
    return np.quantile(replicates, quantiles)


def _positive_mask(y_true) -> np.ndarray:
    y = np.asarray(y_true).ravel()
    if y.dtype != bool:
        values = set(np.unique(y).tolist())
        if not values <= {0, 1}:
            raise ValueError(f"y_true must mark the positive class with True/1, got values {sorted(values)}")
        y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError("y_true needs both positive and negative samples")
    return y
