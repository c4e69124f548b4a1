"""Simulations with known truth: the verdict's error rates, power and interval coverage."""

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.model_selection import RepeatedStratifiedKFold

from cvkit import stats

ALPHA = 0.05


def _verdict_claims_difference(diffs, n_train, n_test):
    t = stats.corrected_ttest(diffs, n_train, n_test)
    return t.pvalue < ALPHA and (t.low > 0 or t.high < 0)


def _rank_auc(y, score):
    ranks = sps.rankdata(score)
    m = y.sum()
    return (ranks[y].sum() - m * (m + 1) / 2) / (m * (len(y) - m))


def _symmetric_learners_cv(rng, n=200, folds=5, repeats=3):
    """Two different learners of equal population accuracy, compared by repeated CV on one data set.

    Features 0-4 and 5-9 carry the same signal; learner A fits least squares on 0-4, learner B on
    5-9. By symmetry their expected AUCs are equal, but on any one data set one of them is luckier,
    and every fold shares that luck: the per-fold differences are correlated.
    """
    y = rng.random(n) < 0.35
    signal = np.where(y, 0.45, -0.45)[:, None]
    x = signal + rng.normal(0, 1, (n, 10))
    x_a, x_b = np.column_stack([x[:, :5], np.ones(n)]), np.column_stack([x[:, 5:], np.ones(n)])
    target = np.where(y, 1.0, -1.0)
    diffs = []
    splitter = RepeatedStratifiedKFold(
        n_splits=folds, n_repeats=repeats, random_state=int(rng.integers(1 << 30))
    )
    for train, test in splitter.split(x, y):
        aucs = []
        for features in (x_a, x_b):
            coef = np.linalg.lstsq(features[train], target[train], rcond=None)[0]
            aucs.append(_rank_auc(y[test], features[test] @ coef))
        diffs.append(aucs[1] - aucs[0])
    return np.array(diffs), n * (folds - 1) / folds, n / folds


def test_aa_comparisons_claim_a_difference_at_most_at_the_nominal_rate():
    rng = np.random.default_rng(11)
    n_sim = 400
    corrected = naive = 0
    for _ in range(n_sim):
        diffs, n_train, n_test = _symmetric_learners_cv(rng)
        corrected += _verdict_claims_difference(diffs, n_train, n_test)
        naive += stats.naive_paired_ttest(diffs).pvalue < ALPHA
    margin = 2.33 * np.sqrt(ALPHA * (1 - ALPHA) / n_sim)  # one-sided 99% binomial margin
    assert corrected / n_sim <= ALPHA + margin
    assert naive / n_sim > 2 * ALPHA  # the uncorrected test on folds rejects far too often
    assert naive > 2 * corrected


def _correlated_fold_diffs(rng, n_sim, effect, sd_split, sd_seed, folds=5, repeats=3):
    """Per-fold differences with the exchangeable correlation rho = 1/k that overlapping training
    sets induce (Nadeau & Bengio 2003), plus independent training-seed noise."""
    J, rho = folds * repeats, 1 / folds
    shared = rng.normal(0, sd_split * np.sqrt(rho), (n_sim, 1))
    own = rng.normal(0, sd_split * np.sqrt(1 - rho), (n_sim, J))
    seed_noise = rng.normal(0, sd_seed, (n_sim, J))
    return effect + shared + own + seed_noise


def test_power_at_the_minimal_detectable_effect_is_about_80_percent():
    rng = np.random.default_rng(12)
    sd_split = 0.03
    sd_diff = sd_split * np.sqrt(1 - 1 / 5)  # the within-run sd of the differences
    mde = stats.minimal_detectable_effect(5, 3, sd_diff, test_train_ratio=1 / 4).effect
    sims = _correlated_fold_diffs(rng, 1000, mde, sd_split, 0.0)
    better = np.mean([_verdict_claims_difference(d, 4, 1) and d.mean() > 0 for d in sims])
    assert better == pytest.approx(0.80, abs=0.04)


def test_corrected_ci_covers_the_procedure_difference_with_seed_noise():
    rng = np.random.default_rng(13)
    truth = 0.012
    sims = _correlated_fold_diffs(rng, 2000, truth, sd_split=0.03, sd_seed=0.01)
    covered = [(r.low <= truth <= r.high) for r in (stats.corrected_ttest(d, 4, 1) for d in sims)]
    assert np.mean(covered) == pytest.approx(0.95, abs=0.02)


def test_sample_bootstrap_covers_the_fixed_models_difference():
    """Two fixed scoring rules; the target is their AUC difference on the whole population."""
    rng = np.random.default_rng(14)

    def draw(n):
        y = rng.random(n) < 0.3
        latent = np.where(y, 1.0, 0.0) + rng.normal(0, 1, n)
        score_a = latent + rng.normal(0, 0.9, n)
        score_b = latent + rng.normal(0, 0.6, n)
        return y, score_a, score_b

    y, a, b = draw(1_000_000)
    truth = _rank_auc(y, b) - _rank_auc(y, a)
    covered = []
    for _ in range(700):
        y, a, b = draw(300)
        ci = stats.bootstrap_diff(
            y, a, b, n_resamples=800, method="percentile", seed=int(rng.integers(1 << 30))
        )
        covered.append(ci.low <= truth <= ci.high)
    assert np.mean(covered) == pytest.approx(0.95, abs=0.02)
