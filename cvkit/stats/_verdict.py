"""The verdict's test: is the variant's expected score different from the baseline's?

Estimand: the expected difference (variant - baseline) of the metric for models trained by each
recipe on data sets of this size, drawn from the population the data set came from; the
expectation runs over data sets, splits and training seeds. The estimate is the mean of the
per-job paired differences of one cross-validation run.

Its variance has a data-set-level part (which samples this data set happened to contain: every
repeat scores the same samples, so repeats cannot average it away) and a within-data-set part
(which split and which seed each model got). Methods:

``corrected_t``
    Nadeau & Bengio's corrected resampled t on the J = k x r per-split differences (seeds
    averaged per split): se^2 = (1/J + n_test/n_train) var(d), df = J - 1.
``corrected_t_df_k1``
    The same standard error with df = k - 1 (conservative, in the spirit of Bouckaert 2003).
``seed_split``
    The seed component (independent across splits) is taken out before the overlap correction:
    se^2 = s2_seed / (s J) + (1/J + n_test/n_train) max(0, var(d) - s2_seed / s).
``sampling``
    se^2 = a + b, with a = mean over jobs of the test-sample variance of that job's difference
    (DeLong's paired variance for AUC, the per-sample paired variance for proportions) divided by
    k: the variance of a score computed once on all n samples; and b = var(repeat means) / r, the
    within-data-set variation of a whole repeat (splits and seeds). Satterthwaite's degrees of
    freedom (a with n - 1, b with r - 1). Needs r >= 2 and the per-job test-sample variances.
``sampling_overlap``
    ``sampling`` plus the Nadeau-Bengio overlap term for the per-split variation that is neither
    seed nor test-sample noise: + (n_test/n_train) max(0, var(d) - mean(v) - s2_seed / s).

``sampling_within``
    ``sampling`` with the within-data-set term taken from the split-to-split variation inside
    each repeat instead of between repeats (r (k - 1) degrees of freedom instead of r - 1):
    se^2 = a + W / (k r), W the pooled within-repeat variance of the per-split differences. W also
    holds each fold's test-sample noise, which the repeat mean averages away: conservative there.

``sampling_training``
    ``sampling`` plus the data-set-level share of training-set variation: when a model's quality
    is a sum of per-sample contributions of its training set, the data set moves the expected
    difference by (n_train / n_test) T, T = max(0, var(d) - mean(v) - s2_seed / s) the per-split
    variation that is neither seed nor test-sample noise (within the data set it is only the small
    part left by changing n_test training samples). Conservative when training effects are not
    additive.

Which method decides (``DEFAULT_METHOD``) is chosen by ``benchmarks/calibration.py``: the most
powerful one whose false-positive rate (<= 5% + binomial margin) and interval coverage (>= 93%)
stay within nominal in every training regime there. Full run (n = 428, 5x3 x 3 seeds, 120-400
data sets per regime): ``sampling_within`` (FPR 1.0-4.8%, coverage >= 94%, mean power 44.6%);
the corrected t is slightly liberal for unstable SGD (FPR 7.0%, coverage 92.8%) at about the same
mean power (45.6%); df = k - 1 is calibrated but weak (22.1%).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

METHODS = (
    "corrected_t",
    "corrected_t_df_k1",
    "seed_split",
    "sampling",
    "sampling_overlap",
    "sampling_within",
    "sampling_training",
)
DEFAULT_METHOD = "sampling_within"
# The metrics whose per-job test-sample variance ``difference_variance`` gives (balanced accuracy
# as the mean of sensitivity and specificity: two classes).
SAMPLING_VARIANCE_METRICS = ("auc", "accuracy", "sensitivity", "specificity", "balanced_accuracy")
# What the default falls back to when the run cannot support it (one repeat, or no per-job
# test-sample variances for this metric).
FALLBACK_METHOD = "corrected_t"


@dataclass(frozen=True)
class PairedJobScores:
    """Per-job scores of a paired cross-validation run: job i is (repeat[i], fold[i], seed[i]);
    baseline and variant were trained on the same split with the same seed index.

    ``diff_variance[i]`` (optional) is the test-sample variance of variant - baseline on job i's
    test fold for fixed trained models (see ``difference_variance``); the sampling methods need
    it. ``n_train`` and ``n_test`` are the mean training (validation included) and test sizes of
    one fold.
    """

    repeat: np.ndarray
    fold: np.ndarray
    seed: np.ndarray
    baseline: np.ndarray
    variant: np.ndarray
    n_train: float
    n_test: float
    diff_variance: np.ndarray | None = None

    def __post_init__(self):
        arrays: dict[str, np.ndarray] = {}
        for name in ("repeat", "fold", "seed"):
            arrays[name] = np.asarray(getattr(self, name), dtype=np.int64).ravel()
        for name in ("baseline", "variant"):
            arrays[name] = np.asarray(getattr(self, name), dtype=np.float64).ravel()
        if self.diff_variance is not None:
            arrays["diff_variance"] = np.asarray(self.diff_variance, dtype=np.float64).ravel()
        lengths = {len(v) for v in arrays.values()}
        if len(lengths) != 1:
            raise ValueError(f"repeat, fold, seed, scores and variances must have one length, got {lengths}")
        if not (np.isfinite(arrays["baseline"]).all() and np.isfinite(arrays["variant"]).all()):
            raise ValueError("job scores contain NaN or infinity (a fold without both classes?)")
        if "diff_variance" in arrays and not (arrays["diff_variance"] >= 0).all():
            raise ValueError("test-sample variances must be finite and non-negative")
        if self.n_train <= 0 or self.n_test <= 0:
            raise ValueError(f"n_train and n_test must be positive, got {self.n_train} and {self.n_test}")
        keys = set(zip(arrays["repeat"], arrays["fold"], arrays["seed"]))
        if len(keys) != len(arrays["repeat"]):
            raise ValueError("a (repeat, fold, seed) job appears more than once")
        for name, value in arrays.items():
            object.__setattr__(self, name, value)

    @property
    def diffs(self) -> np.ndarray:
        return self.variant - self.baseline

    def split_differences(self) -> np.ndarray:
        """Per split (repeat, fold), in that order, the difference with its seeds averaged."""
        return DifferenceSummaries(self).split_means


@dataclass(frozen=True)
class DifferenceTest:
    estimate: float  # mean paired difference, variant - baseline
    se: float
    df: float
    t: float
    p: float
    ci_low: float
    ci_high: float
    alpha: float  # the CI is (1 - alpha)
    method: str
    n_splits: int  # J = folds x repeats
    n_seeds: float  # seeds per split (mean, when unbalanced)


def difference_test(
    jobs: PairedJobScores, method: str = DEFAULT_METHOD, *, alpha: float = 0.05
) -> DifferenceTest:
    """Two-sided test of "no expected difference" and the (1 - alpha) interval of the difference.

    ``method`` is one of ``METHODS``. When the default cannot be computed (one repeat, or no
    ``diff_variance``) it falls back to ``FALLBACK_METHOD``; the result's ``method`` says which ran.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    parts = DifferenceSummaries(jobs)
    if parts.n_splits < 2:
        raise ValueError(f"need at least 2 splits, got {parts.n_splits}")
    if method.startswith("sampling") and not parts.supports_sampling:
        if method != DEFAULT_METHOD:
            raise ValueError(f"{method} needs at least 2 repeats and per-job test-sample variances")
        method = FALLBACK_METHOD
    variance, df = getattr(parts, method)()
    se = float(np.sqrt(variance))
    estimate = parts.estimate
    if se == 0:
        t = 0.0 if estimate == 0 else float(np.sign(estimate) * np.inf)
        p = 1.0 if estimate == 0 else 0.0
    else:
        t = estimate / se
        p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(1 - alpha / 2, df) * se)
    return DifferenceTest(
        estimate, se, float(df), float(t), p, estimate - half, estimate + half, alpha, method,
        parts.n_splits, parts.n_seeds,
    )  # fmt: skip


class DifferenceSummaries:
    """The summaries of the paired differences that every method is built from."""

    def __init__(self, jobs: PairedJobScores):
        self.jobs = jobs
        d = jobs.diffs
        split_keys = jobs.repeat * 1_000_003 + jobs.fold
        splits, split_index = np.unique(split_keys, return_inverse=True)
        counts = np.bincount(split_index)
        self.split_means = np.bincount(split_index, weights=d) / counts
        self.n_splits = len(splits)
        self.n_seeds = float(np.mean(counts))
        self.n_folds = len(np.unique(jobs.fold))
        self.n_repeats = len(np.unique(jobs.repeat))
        self.estimate = float(self.split_means.mean())
        # Seed noise: pooled within-split variance of single jobs (0 when one seed per split).
        residual = d - self.split_means[split_index]
        within_df = len(d) - self.n_splits
        self.seed_var = float(residual @ residual / within_df) if within_df > 0 else 0.0
        self.seed_df = within_df
        self.harmonic_seeds = float(len(counts) / np.sum(1 / counts))
        self.split_var = float(self.split_means.var(ddof=1))
        self.ratio = jobs.n_test / jobs.n_train
        repeat_of_split = splits // 1_000_003
        self.repeat_means = np.array(
            [self.split_means[repeat_of_split == r].mean() for r in np.unique(repeat_of_split)]
        )
        deviations = (
            self.split_means - self.repeat_means[np.searchsorted(np.unique(repeat_of_split), repeat_of_split)]
        )
        self.within_repeat_var = float(
            deviations @ deviations / max(1, self.n_splits - len(self.repeat_means))
        )
        self.supports_sampling = jobs.diff_variance is not None and len(self.repeat_means) >= 2
        # Mean test-sample variance of one job's difference (the sampling methods only).
        self.test_noise = float("nan") if jobs.diff_variance is None else float(np.mean(jobs.diff_variance))

    def corrected_t(self):
        return (1 / self.n_splits + self.ratio) * self.split_var, self.n_splits - 1

    def corrected_t_df_k1(self):
        return (1 / self.n_splits + self.ratio) * self.split_var, max(1, self.n_folds - 1)

    def seed_split(self):
        seed_part = self.seed_var / self.harmonic_seeds
        training = max(0.0, self.split_var - seed_part)
        terms = [
            (seed_part / self.n_splits, self.seed_df),
            ((1 / self.n_splits + self.ratio) * training, self.n_splits - 1),
        ]
        return satterthwaite(terms)

    def _sampling_terms(self):
        n_samples = self.n_folds * self.jobs.n_test
        data_set = self.test_noise / self.n_folds
        repeats = float(self.repeat_means.var(ddof=1)) / len(self.repeat_means)
        return [(data_set, n_samples - 1), (repeats, len(self.repeat_means) - 1)]

    def sampling(self):
        return satterthwaite(self._sampling_terms())

    def sampling_within(self):
        data_set = self._sampling_terms()[0]
        within = self.within_repeat_var / (self.n_folds * self.n_repeats)
        return satterthwaite([data_set, (within, self.n_repeats * (self.n_folds - 1))])

    def sampling_training(self):
        training = max(0.0, self.split_var - self.test_noise - self.seed_var / self.harmonic_seeds)
        return satterthwaite([*self._sampling_terms(), (training / self.ratio, self.n_splits - 1)])

    def sampling_overlap(self):
        training = max(0.0, self.split_var - self.test_noise - self.seed_var / self.harmonic_seeds)
        return satterthwaite([*self._sampling_terms(), (self.ratio * training, self.n_splits - 1)])


def satterthwaite(terms):
    """Sum of independent variance estimates and its Satterthwaite degrees of freedom."""
    total = sum(v for v, _ in terms)
    denominator = sum(v**2 / df for v, df in terms if df > 0 and v > 0)
    if denominator == 0:
        return total, float(max(df for _, df in terms))
    return total, float(total**2 / denominator)


def difference_variance(
    metric: str,
    is_positive,
    *,
    score_a=None,
    score_b=None,
    correct_a=None,
    correct_b=None,
    said_positive_a=None,
    said_positive_b=None,
) -> float | None:
    """Test-sample variance of one job's difference (b - a) for the two fixed trained models: what
    the difference would vary by over other test folds of the same size.

    ``auc``: DeLong's paired variance (needs ``score_a``/``score_b``, the positive-class scores).
    ``accuracy``: var of the per-sample difference in correctness / n (``correct_a``/``correct_b``).
    ``sensitivity``/``specificity``: the same within positives/negatives (``said_positive_*``);
    ``balanced_accuracy``: a quarter of their sum. Other metrics: None (no sampling method).
    """
    positive = np.asarray(is_positive, dtype=bool)
    if metric == "auc":
        from ._samples import delong

        return float(delong(positive, score_a, score_b).se ** 2)
    if metric == "accuracy":
        return _mean_diff_variance(np.asarray(correct_b, float) - np.asarray(correct_a, float))
    if metric in ("sensitivity", "specificity", "balanced_accuracy"):
        said = np.asarray(said_positive_b, float) - np.asarray(said_positive_a, float)
        sensitivity = _mean_diff_variance(said[positive])
        specificity = _mean_diff_variance(said[~positive])
        return {
            "sensitivity": sensitivity,
            "specificity": specificity,
            "balanced_accuracy": (sensitivity + specificity) / 4,
        }[metric]
    return None


def _mean_diff_variance(d) -> float:
    if len(d) < 2:
        return 0.0
    return float(np.var(d, ddof=1) / len(d))
