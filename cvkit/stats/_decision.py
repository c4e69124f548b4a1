"""The verdict: one decision rule for many variants against one baseline, whose printed interval
and verdict cannot contradict each other.

Each variant's interval is drawn at the level of its own Holm step (Holm 1979): the variant with
the j-th smallest p-value gets the interval at confidence 1 - alpha/(m - j + 1), and every variant
from the first one Holm does not reject on gets the level of that step. So an interval excludes 0
exactly when Holm rejects (step-down-consistent intervals). They are not simultaneous intervals:
each covers its own difference at its stated level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ._runs import holm
from ._ttest import BayesResult, CorrectedTTestResult, bayes_correlated_ttest, corrected_ttest
from ._verdict import PairedJobScores, difference_test

# The region of practical equivalence by default: for AUC 0.01; for a metric counted on samples,
# at least one sample's worth of it in one test fold (one positive per fold moves sensitivity by
# 1/positives), since a smaller ROPE is below the metric's own resolution.
BASE_ROPE = 0.01


@dataclass(frozen=True)
class Verdict:
    """One variant's decision. ``ttest`` carries the interval at ``confidence`` (its Holm step)."""

    verdict: str  # see VERDICTS
    ttest: CorrectedTTestResult
    pvalue_holm: float
    confidence: float  # of the printed interval: 1 - the Holm step's alpha
    family_size: int  # how many variants share the Holm family
    bayes: BayesResult
    rope: float
    smallest_rope: float  # the narrowest ROPE this design could confirm as equivalent (true Δ = 0)

    @property
    def significant(self) -> bool:
        return self.ttest.low > 0 or self.ttest.high < 0


VERDICTS = (
    "better",
    "better, but negligible",
    "worse",
    "worse, but negligible",
    "equivalent",
    "inconclusive",
)


def verdict_test(jobs: PairedJobScores, *, confidence: float = 0.95) -> CorrectedTTestResult:
    """The test every verdict rests on, in one place: ``difference_test`` of the paired per-job
    scores with the default method (``sampling_within``, the one candidate that kept its level and
    coverage in every regime of ``benchmarks/calibration.py``; the corrected resampled t when the
    run cannot support it).

    Parameters
    ----------
    jobs : PairedJobScores
        Per-job scores of the baseline and the variant, trained on the same splits and seeds.
    confidence : float, default=0.95
        Level of the interval of the mean difference (variant minus baseline).

    Returns
    -------
    CorrectedTTestResult
        ``statistic``, ``pvalue``, ``df``, ``mean``, ``se``, the interval ``low``/``high`` at
        ``confidence``, and ``method``: which test ran.
    """
    t = difference_test(jobs, alpha=1 - confidence)
    return CorrectedTTestResult(
        statistic=t.t,
        pvalue=t.p,
        df=t.df,
        mean=t.estimate,
        se=t.se,
        low=t.ci_low,
        high=t.ci_high,
        confidence=confidence,
        method=t.method,
    )


def default_rope(metric: str, n_test: float, n_positive_test: float) -> float:
    """The default ROPE of ``metric`` for test folds of ``n_test`` samples, ``n_positive_test`` of
    them positive: 0.01, or one sample's worth of the metric in one fold when that is coarser."""
    n_negative_test = max(n_test - n_positive_test, 1)
    n_positive_test = max(n_positive_test, 1)
    resolution = dict(
        auc=0.0,
        accuracy=1 / n_test,
        sensitivity=1 / n_positive_test,
        specificity=1 / n_negative_test,
        balanced_accuracy=0.5 / min(n_positive_test, n_negative_test),
        f1=1 / n_positive_test,
    ).get(metric, 0.0)
    return float(max(BASE_ROPE, resolution))


def holm_levels(pvalues, alpha: float) -> np.ndarray:
    """Per hypothesis, the alpha of its Holm step: alpha/(m - j + 1) for the j-th smallest p-value
    up to the first one Holm does not reject; that step's alpha for it and every later one."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    levels = np.empty(m)
    stopped_at = None
    for j, index in enumerate(np.argsort(p, kind="stable")):
        step = alpha / (m - j)
        if stopped_at is None and not p[index] < step:
            stopped_at = step
        levels[index] = step if stopped_at is None else stopped_at
    return levels


def decide(ttest: CorrectedTTestResult, bayes: BayesResult, rope: float) -> str:
    """Significant (the interval excludes 0): better or worse, "but negligible" when the whole
    interval lies inside the ROPE. Else equivalent when the Bayesian posterior puts 95% inside the
    ROPE, else inconclusive."""
    if ttest.low > 0 or ttest.high < 0:
        direction = "better" if ttest.mean > 0 else "worse"
        negligible = -rope <= ttest.low and ttest.high <= rope
        return f"{direction}, but negligible" if negligible else direction
    if bayes.p_equivalent >= 0.95:
        return "equivalent"
    return "inconclusive"


def verdicts(jobs_per_variant: list[PairedJobScores], *, alpha: float, rope: float) -> list[Verdict]:
    """The verdicts of m variants against one baseline (one Holm family at ``alpha``), each from
    its paired per-job scores."""
    first = [verdict_test(jobs) for jobs in jobs_per_variant]
    pvalues = [t.pvalue for t in first]
    adjusted = holm(pvalues)
    levels = holm_levels(pvalues, alpha)
    out = []
    for jobs, p_holm, level in zip(jobs_per_variant, adjusted, levels):
        ttest = verdict_test(jobs, confidence=1 - level)
        # The Bayesian correlated t and the smallest confirmable ROPE work on the per-split
        # differences (seeds averaged), as baycomp does.
        diffs = jobs.split_differences()
        bayes = bayes_correlated_ttest(diffs, rho=jobs.n_test / (jobs.n_train + jobs.n_test), rope=rope)
        out.append(
            Verdict(
                verdict=decide(ttest, bayes, rope),
                ttest=ttest,
                pvalue_holm=float(p_holm),
                confidence=float(1 - level),
                family_size=len(pvalues),
                bayes=bayes,
                rope=rope,
                smallest_rope=smallest_confirmable_rope(corrected_ttest(diffs, jobs.n_train, jobs.n_test)),
            )
        )
    return out


def smallest_confirmable_rope(ttest: CorrectedTTestResult) -> float:
    """The narrowest ROPE the Bayesian correlated t could call "equivalent" (95% of the posterior
    inside) if the observed difference were exactly 0: t(0.975, df) times the posterior scale (the
    corrected standard error). A ROPE narrower than this cannot be confirmed by this design."""
    return float(sps.t.ppf(0.975, ttest.df) * ttest.se)
