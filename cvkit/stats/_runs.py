"""Statistics over runs: P(A > B), multiplicity corrections and seed/split variance components."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ProbOutperformResult:
    statistic: float  # P(variant > baseline), ties counting one half
    low: float
    high: float
    n: int
    confidence: float


@dataclass(frozen=True)
class VarianceComponents:
    """One-way random effects over splits, ``n_seeds`` training seeds per split."""

    between_split: float  # variance from which data the model was trained and tested on
    within_split: float  # variance from the training seed alone (with residual noise)
    n_splits: int
    n_seeds: int

    @property
    def seed_sd(self) -> float:
        """The seed noise floor: the standard deviation of a score from the training seed alone."""
        return float(np.sqrt(self.within_split))

    @property
    def split_sd(self) -> float:
        return float(np.sqrt(self.between_split))

    @property
    def seed_share(self) -> float:
        total = self.between_split + self.within_split
        return float(self.within_split / total) if total > 0 else 0.0


def prob_outperform(
    scores_a, scores_b, *, n_resamples: int = 10000, confidence: float = 0.95, seed: int = 0
) -> ProbOutperformResult:
    """P(variant > baseline) over paired runs (Bouthillier et al. 2021), with a percentile
    bootstrap CI over the pairs. A meaningful improvement needs P > 0.75 with the CI above 0.5."""
    a, b = np.asarray(scores_a, dtype=np.float64).ravel(), np.asarray(scores_b, dtype=np.float64).ravel()
    if a.shape != b.shape or len(a) == 0:
        raise ValueError(f"need two equally long, non-empty score lists, got {len(a)} and {len(b)}")
    wins = (b > a) + 0.5 * (b == a)
    rng = np.random.default_rng(seed)
    resampled = wins[rng.integers(0, len(wins), size=(n_resamples, len(wins)))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(resampled, [alpha, 1 - alpha])
    return ProbOutperformResult(float(wins.mean()), float(low), float(high), len(wins), confidence)


def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error control), as statsmodels computes them."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=np.float64)
    return multipletests(p, method="holm")[1] if len(p) else p


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
    return VarianceComponents(max(0.0, (msb - msw) / s), msw, g, s)


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
    """Friedman test over independent blocks (rows: e.g. CV repeats' pooled scores, or data sets;
    columns: three or more models; higher is better) with the Nemenyi critical difference.
    Never use correlated folds as blocks."""
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
