"""Statistics over runs: P(A > B), multiplicity corrections and seed/split variance components."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ProbOutperformResult:
    """Descriptive only: the share of paired jobs the variant won. The pairs of one CV run share
    splits and training data, so they are not independent, and no interval is attached: a bootstrap
    over them excludes 0.5 in 25-53% of runs without any true difference."""

    statistic: float  # P(variant > baseline), ties counting one half
    n: int


@dataclass(frozen=True)
class VarianceComponents:
    """One-way random effects over splits, ``n_seeds`` training seeds per split."""

    between_split: float  # variance from which data the model was trained and tested on
    within_split: float  # variance from the training seed alone (with residual noise)
    n_splits: int
    n_seeds: int
    # The between-split estimate (MSB - MSW)/s came out negative and was truncated at 0: the split
    # component is not distinguishable from seed noise, which is not the same as being 0.
    split_truncated: bool = False

    @property
    def seed_sd(self) -> float:
        """The seed noise floor: the standard deviation of a score from the training seed alone."""
        return float(np.sqrt(self.within_split))

    @property
    def split_sd(self) -> float:
        return float(np.sqrt(self.between_split))

    @property
    def seed_share(self) -> float:
        """The seed's share of the total variance; NaN when the split component was truncated at 0
        (a share of 100% would claim more than the data show)."""
        total = self.between_split + self.within_split
        if self.split_truncated or total <= 0:
            return float("nan")
        return float(self.within_split / total)


def prob_outperform(scores_a, scores_b) -> ProbOutperformResult:
    """P(variant > baseline) over paired runs (Bouthillier et al. 2021), ties counting one half:
    a description of how often the variant won, with no interval (the pairs are correlated)."""
    a, b = np.asarray(scores_a, dtype=np.float64).ravel(), np.asarray(scores_b, dtype=np.float64).ravel()
    if a.shape != b.shape or len(a) == 0:
        raise ValueError(f"need two equally long, non-empty score lists, got {len(a)} and {len(b)}")
    wins = (b > a) + 0.5 * (b == a)
    return ProbOutperformResult(float(wins.mean()), len(wins))


def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error control): the i-th smallest of m becomes
    max over j <= i of min(1, (m - j + 1) p_(j)). Written out rather than taken from statsmodels'
    multipletests, whose Holm path runs a full gc.collect() on every call (0.1-0.25 s each in a
    process holding torch; the report calls it once per variant and warning).

    Parameters
    ----------
    pvalues : array of float
        The family's p-values, in any order.

    Returns
    -------
    numpy.ndarray
        The adjusted p-values, in the order given.
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, np.maximum.accumulate(p[order] * np.arange(len(p), 0, -1)))
    adjusted = np.empty_like(p)
    adjusted[order] = stepped
    return adjusted


def benjamini_hochberg(pvalues) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false-discovery-rate control)."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=np.float64)
    return multipletests(p, method="fdr_bh")[1] if len(p) else p


def variance_components(scores, splits) -> VarianceComponents:
    """Split the variance of a per-fold score (or paired difference) into a between-split part
    and a within-split (training seed) part: balanced one-way random effects, ANOVA estimates
    sigma2_seed = MSW and sigma2_split = max(0, (MSB - MSW) / s). With one score per (split,
    seed), the seed variance and the residual are a single component: the within-split one."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    splits = np.asarray(splits).ravel()
    labels, counts = np.unique(splits, return_counts=True)
    if len(set(counts.tolist())) != 1 or counts[0] < 2:
        raise ValueError("variance components need the same number (>= 2) of seeds for every split")
    s, g = int(counts[0]), len(labels)
    table = np.array([scores[splits == label] for label in labels])  # (g, s)
    msw = float(((table - table.mean(axis=1, keepdims=True)) ** 2).sum() / (g * (s - 1)))
    msb = float(s * ((table.mean(axis=1) - table.mean()) ** 2).sum() / (g - 1)) if g > 1 else 0.0
    between = (msb - msw) / s
    return VarianceComponents(max(0.0, between), msw, g, s, split_truncated=bool(between <= 0))


# Studentized range quantiles q_0.05 / sqrt(2) for the Nemenyi test (Demsar 2006, Table 5a).
NEMENYI_Q05 = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}


@dataclass(frozen=True)
class FriedmanResult:
    statistic: float
    pvalue: float
    mean_ranks: np.ndarray  # per model, 1 = best
    critical_difference: float  # Nemenyi, alpha 0.05: ranks further apart than this differ
    n_blocks: int


def friedman(scores) -> FriedmanResult:
    """Friedman test over independent blocks (rows: data sets; columns: three or more models;
    higher is better) with the Nemenyi critical difference (Demsar 2006). Never use the folds or
    repeats of one data set as blocks: a model lucky on that data set is lucky in every repeat, and
    with three equal learners the test then rejects on about 55% of data sets."""
    from scipy import stats as sps

    scores = np.asarray(scores, dtype=np.float64)
    n, k = scores.shape
    if k < 3 or n < 2:
        raise ValueError(f"the Friedman test needs at least 3 models and 2 blocks, got {k} and {n}")
    if k not in NEMENYI_Q05:
        raise ValueError(f"the Nemenyi table covers 2 to 10 models, got {k}")
    ranks = sps.rankdata(-scores, axis=1)
    statistic, pvalue = sps.friedmanchisquare(*scores.T)
    cd = NEMENYI_Q05[k] * np.sqrt(k * (k + 1) / (6 * n))
    return FriedmanResult(float(statistic), float(pvalue), ranks.mean(axis=0), float(cd), n)
