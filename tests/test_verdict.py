"""The verdict's test (cvkit.stats.difference_test) against hand formulas and scipy."""

import numpy as np
import pytest
from scipy import stats

from cvkit.stats import (
    DEFAULT_VERDICT_METHOD,
    VERDICT_METHODS,
    PairedJobScores,
    corrected_ttest,
    delong,
    difference_test,
    difference_variance,
)


def _jobs(k=5, r=3, s=3, seed=0, variance=True, shift=0.0):
    rng = np.random.default_rng(seed)
    repeat, fold, seed_index = (a.ravel() for a in np.meshgrid(range(r), range(k), range(s), indexing="ij"))
    split = rng.normal(0, 0.02, size=(r, k))[repeat, fold]
    baseline = 0.85 + split + rng.normal(0, 0.03, size=len(repeat))
    variant = baseline + shift + 0.5 * split + rng.normal(0, 0.03, size=len(repeat))
    v = rng.uniform(0.0004, 0.0009, size=len(repeat)) if variance else None
    return PairedJobScores(
        repeat, fold, seed_index, baseline, variant, n_train=342.4, n_test=85.6, diff_variance=v
    )


def _split_means(jobs):
    keys = sorted(set(zip(jobs.repeat, jobs.fold)))
    d = jobs.diffs
    return np.array([d[(jobs.repeat == r) & (jobs.fold == f)].mean() for r, f in keys])


def test_corrected_t_is_nadeau_bengio_on_seed_averaged_splits():
    jobs = _jobs(shift=0.01)
    result = difference_test(jobs, "corrected_t")
    d = _split_means(jobs)
    J, ratio = len(d), 85.6 / 342.4
    # Reference: scipy's one-sample t scaled by the corrected variance factor.
    naive = stats.ttest_1samp(d, 0.0)
    t = naive.statistic * np.sqrt((1 / J) / (1 / J + ratio))
    assert result.t == pytest.approx(t, rel=1e-12)
    assert result.p == pytest.approx(2 * stats.t.sf(abs(t), J - 1), rel=1e-10)
    assert result.df == J - 1 and result.n_splits == 15 and result.n_seeds == 3
    assert result.estimate == pytest.approx(d.mean())
    # ... and the same numbers as the existing corrected_ttest on the per-split differences.
    old = corrected_ttest(d, 342.4, 85.6)
    assert (result.ci_low, result.ci_high) == pytest.approx((old.low, old.high), rel=1e-12)


def test_df_k1_uses_the_same_se_with_fewer_degrees_of_freedom():
    jobs = _jobs(shift=0.01)
    plain, k1 = difference_test(jobs, "corrected_t"), difference_test(jobs, "corrected_t_df_k1")
    assert k1.se == pytest.approx(plain.se) and k1.df == 4
    assert k1.p == pytest.approx(2 * stats.t.sf(abs(plain.t), 4)) and k1.p > plain.p


def test_sampling_is_data_set_term_plus_between_repeat_term_with_satterthwaite_df():
    jobs = _jobs(shift=0.01)
    result = difference_test(jobs, "sampling", alpha=0.10)
    repeat_means = _split_means(jobs).reshape(3, 5).mean(axis=1)
    a = jobs.diff_variance.mean() / 5
    b = repeat_means.var(ddof=1) / 3
    df = (a + b) ** 2 / (a**2 / (5 * 85.6 - 1) + b**2 / 2)
    assert result.se == pytest.approx(np.sqrt(a + b), rel=1e-12)
    assert result.df == pytest.approx(df, rel=1e-12)
    half = stats.t.ppf(0.95, df) * result.se
    assert result.ci_low == pytest.approx(result.estimate - half) and result.alpha == 0.10
    assert result.p == pytest.approx(2 * stats.t.sf(abs(result.estimate / result.se), df))


def test_the_default_falls_back_to_the_corrected_t_when_it_cannot_run():
    no_variance = _jobs(variance=False)
    assert difference_test(no_variance).method == "corrected_t"
    one_repeat = _jobs(r=1)
    assert difference_test(one_repeat).method == "corrected_t"
    assert difference_test(_jobs()).method == DEFAULT_VERDICT_METHOD
    with pytest.raises(ValueError, match="needs at least 2 repeats"):
        difference_test(
            no_variance, "sampling_overlap" if DEFAULT_VERDICT_METHOD == "sampling" else "sampling"
        )


def test_every_method_runs_and_its_interval_contains_the_estimate():
    for method in VERDICT_METHODS:
        result = difference_test(_jobs(shift=0.02), method)
        assert result.ci_low < result.estimate < result.ci_high
        assert result.method == method


def test_bad_input_is_refused():
    good = _jobs()
    with pytest.raises(ValueError, match="more than once"):
        PairedJobScores([0, 0], [0, 0], [0, 0], [0.8, 0.8], [0.9, 0.9], n_train=10, n_test=5)
    with pytest.raises(ValueError, match="NaN"):
        PairedJobScores([0, 0], [0, 1], [0, 0], [0.8, np.nan], [0.9, 0.9], n_train=10, n_test=5)
    with pytest.raises(ValueError, match="method must be one of"):
        difference_test(good, "wilcoxon")


def test_difference_variance_matches_delong_and_the_per_sample_formula():
    rng = np.random.default_rng(3)
    positive = rng.random(90) < 0.35
    a = rng.random(90) + positive * 0.5
    b = rng.random(90) + positive * 0.6
    assert difference_variance("auc", positive, score_a=a, score_b=b) == pytest.approx(
        delong(positive, a, b).se ** 2
    )
    right_a, right_b = rng.random(90) < 0.8, rng.random(90) < 0.85
    d = right_b.astype(float) - right_a
    assert difference_variance("accuracy", positive, correct_a=right_a, correct_b=right_b) == pytest.approx(
        d.var(ddof=1) / 90
    )
    said_a, said_b = a > 0.7, b > 0.7
    sens = (said_b.astype(float) - said_a)[positive]
    spec = (said_b.astype(float) - said_a)[~positive]
    kwargs = dict(said_positive_a=said_a, said_positive_b=said_b)
    assert difference_variance("sensitivity", positive, **kwargs) == pytest.approx(
        sens.var(ddof=1) / len(sens)
    )
    assert difference_variance("balanced_accuracy", positive, **kwargs) == pytest.approx(
        (sens.var(ddof=1) / len(sens) + spec.var(ddof=1) / len(spec)) / 4
    )
    assert difference_variance("f1", positive) is None


def test_sampling_training_adds_the_data_set_share_of_training_variation():
    noisy = _jobs(shift=0.01)
    jobs = PairedJobScores(
        noisy.repeat, noisy.fold, noisy.seed, noisy.baseline, noisy.variant, n_train=342.4, n_test=85.6,
        diff_variance=noisy.diff_variance / 10,
    )  # fmt: skip
    base, result = difference_test(jobs, "sampling"), difference_test(jobs, "sampling_training")
    d = _split_means(jobs)
    seed_var = np.mean(
        [
            np.var(jobs.diffs[(jobs.repeat == r) & (jobs.fold == f)], ddof=1)
            for r in range(3)
            for f in range(5)
        ]
    )
    training = max(0.0, d.var(ddof=1) - jobs.diff_variance.mean() - seed_var / 3)
    assert training > 0
    assert result.se**2 == pytest.approx(base.se**2 + training * 342.4 / 85.6, rel=1e-9)
