"""Each statistic against a reference implementation on fixed vectors."""

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import accuracy_score, roc_auc_score

from cvkit import stats

RNG = np.random.default_rng(20240601)
DIFFS = np.array(
    [
        0.021,
        -0.004,
        0.035,
        0.012,
        -0.018,
        0.027,
        0.009,
        0.001,
        0.044,
        -0.011,
        0.016,
        0.030,
        -0.007,
        0.019,
        0.005,
    ]
)  # 5 folds x 3 repeats


# -- corrected resampled t-test -------------------------------------------------------------------
def _sklearn_gallery_corrected_ttest(differences, n_train, n_test):
    """The scikit-learn gallery's corrected t-test (after the fix of PR #19966), written as there."""
    kr = len(differences)
    corrected_var = np.var(differences, ddof=1) * (1 / kr + n_test / n_train)
    t_stat = np.mean(differences) / np.sqrt(corrected_var)
    p_val = sps.t.sf(np.abs(t_stat), kr - 1) * 2
    return t_stat, p_val


def test_corrected_ttest_by_hand():
    result = stats.corrected_ttest(DIFFS, n_train=342, n_test=86)
    J, mean, var = 15, DIFFS.mean(), DIFFS.var(ddof=1)
    se = np.sqrt((1 / J + 86 / 342) * var)
    assert result.statistic == pytest.approx(mean / se)
    assert result.pvalue == pytest.approx(2 * sps.t.sf(abs(mean / se), 14))
    assert result.df == 14 and result.mean == pytest.approx(mean)
    half = sps.t.ppf(0.975, 14) * se
    assert (result.low, result.high) == pytest.approx((mean - half, mean + half))


def test_corrected_ttest_matches_independent_implementation():
    t, p = _sklearn_gallery_corrected_ttest(DIFFS, 342, 86)
    result = stats.corrected_ttest(DIFFS, 342, 86)
    assert result.statistic == pytest.approx(t) and result.pvalue == pytest.approx(p)


def test_corrected_ttest_avoids_the_published_mistakes():
    J, var = len(DIFFS), DIFFS.var(ddof=1)
    right = stats.corrected_ttest(DIFFS, 342, 86).statistic
    wrong_first_term = DIFFS.mean() / np.sqrt((1 / (342 + 86) + 86 / 342) * var)
    wrong_rho = DIFFS.mean() / np.sqrt((1 / J + 86 / (342 + 86)) * var)
    assert right < wrong_rho and abs(right - wrong_first_term) > 1e-3
    assert wrong_rho / right == pytest.approx(np.sqrt((1 / J + 86 / 342) / (1 / J + 86 / 428)))


def test_corrected_ttest_is_one_sided_bayes_with_flat_rope():
    """The Bayesian correlated t with rope 0 is the corrected t's one-sided p (an identity)."""
    t = stats.corrected_ttest(DIFFS, 342, 86)
    bayes = stats.bayes_correlated_ttest(DIFFS, rho=86 / 428, rope=0.0)
    assert bayes.p_worse == pytest.approx(t.pvalue / 2)


def test_corrected_ttest_constant_differences():
    assert stats.corrected_ttest(np.zeros(5), 40, 10).pvalue == 1.0
    assert stats.corrected_ttest(np.full(5, 0.1), 40, 10).pvalue == 0.0
    with pytest.raises(ValueError, match="NaN"):
        stats.corrected_ttest([0.1, np.nan, 0.2], 40, 10)


# -- Bayesian correlated t ------------------------------------------------------------------------
@pytest.mark.parametrize("rope", [0.0, 0.01, 0.02])
def test_bayes_correlated_ttest_matches_baycomp(rope):
    from baycomp import two_on_single

    baseline = 0.85 + RNG.normal(0, 0.02, 15)
    variant = baseline + DIFFS
    probs = two_on_single(baseline, variant, rope=rope, runs=3)
    p_left, p_rope, p_right = probs if rope else (probs[0], 0.0, probs[1])
    ours = stats.bayes_correlated_ttest(variant - baseline, rho=1 / 5, rope=rope)
    assert (ours.p_worse, ours.p_equivalent, ours.p_better) == pytest.approx(
        (p_left, p_rope, p_right), abs=1e-9
    )


# -- McNemar --------------------------------------------------------------------------------------
def _pairs(b, c, both_right=50, both_wrong=10):
    y = np.ones(b + c + both_right + both_wrong, dtype=int)
    a = np.concatenate([np.ones(b), np.zeros(c), np.ones(both_right), np.zeros(both_wrong)]).astype(int)
    v = np.concatenate([np.zeros(b), np.ones(c), np.ones(both_right), np.zeros(both_wrong)]).astype(int)
    return y, a, v


@pytest.mark.parametrize("b, c", [(3, 11), (10, 12), (0, 6), (25, 9), (1, 1)])
def test_mcnemar_matches_statsmodels(b, c):
    from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

    y, a, v = _pairs(b, c)
    table = [[50, b], [c, 10]]
    exact = stats.mcnemar(y, a, v, method="exact")
    assert (exact.b, exact.c) == (b, c)
    assert exact.pvalue == pytest.approx(sm_mcnemar(table, exact=True).pvalue)
    chi2 = stats.mcnemar(y, a, v, method="chi2")
    reference = sm_mcnemar(table, exact=False, correction=True)
    if b == c:  # statsmodels gives (|b - c| - 1)^2 / n = 1/n here; the corrected statistic is 0
        assert (chi2.statistic, chi2.pvalue) == (0.0, 1.0) and reference.statistic == pytest.approx(
            1 / (b + c)
        )
    else:
        assert chi2.statistic == pytest.approx(reference.statistic)
        assert chi2.pvalue == pytest.approx(reference.pvalue)


def test_mcnemar_mid_p_by_definition_and_mlxtend():
    from mlxtend.evaluate import mcnemar as mlx_mcnemar

    y, a, v = _pairs(4, 13)
    n, k = 17, 4
    mid = 2 * (sum(sps.binom.pmf(i, n, 0.5) for i in range(k)) + sps.binom.pmf(k, n, 0.5) / 2)
    assert stats.mcnemar(y, a, v).pvalue == pytest.approx(mid)
    assert stats.mcnemar(y, a, v).pvalue < stats.mcnemar(y, a, v, method="exact").pvalue
    _, p_exact = mlx_mcnemar(np.array([[50, 4], [13, 10]]), exact=True)
    assert stats.mcnemar(y, a, v, method="exact").pvalue == pytest.approx(p_exact)


def test_mcnemar_without_disagreement_is_p_one():
    y, a, v = _pairs(0, 0)
    for method in ("midp", "exact", "chi2"):
        assert stats.mcnemar(y, a, v, method=method).pvalue == 1.0


# -- DeLong ---------------------------------------------------------------------------------------
def _delong_direct(y, a, b):
    """DeLong et al. (1988) with explicit O(m n) placement values."""
    x_idx, y_idx = np.flatnonzero(y), np.flatnonzero(~y)
    m, n = len(x_idx), len(y_idx)
    out = []
    for s in (a, b):
        psi = (s[x_idx][:, None] > s[y_idx][None, :]) + 0.5 * (s[x_idx][:, None] == s[y_idx][None, :])
        out.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    (auc_a, v10a, v01a), (auc_b, v10b, v01b) = out
    s10, s01 = np.cov(np.vstack([v10a, v10b])), np.cov(np.vstack([v01a, v01b]))
    s = s10 / m + s01 / n
    z = (auc_b - auc_a) / np.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])
    return auc_a, auc_b, z, 2 * sps.norm.sf(abs(z))


@pytest.mark.parametrize("ties", [False, True])
def test_delong_matches_direct_version_and_sklearn(ties):
    y = RNG.random(300) < 0.3
    a = y * 0.8 + RNG.normal(0, 1, 300)
    b = y * 1.1 + 0.5 * a + RNG.normal(0, 1, 300)
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    result = stats.delong(y, a, b)
    auc_a, auc_b, z, p = _delong_direct(y, a, b)
    assert result.auc_a == pytest.approx(roc_auc_score(y, a)) == pytest.approx(auc_a)
    assert result.auc_b == pytest.approx(roc_auc_score(y, b)) == pytest.approx(auc_b)
    assert result.statistic == pytest.approx(z) and result.pvalue == pytest.approx(p)
    assert 0 <= result.pvalue <= 1  # a probability, not log10(p)


# -- bootstrap ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scored():
    rng = np.random.default_rng(3)
    y = rng.random(150) < 0.35
    a = 1 / (1 + np.exp(-(1.2 * y - 0.6 + rng.normal(0, 1, 150))))
    b = 1 / (1 + np.exp(-(1.6 * y - 0.8 + rng.normal(0, 1, 150))))
    return y, a, b


@pytest.mark.parametrize(
    "metric, method",
    [
        ("auc", "percentile"),
        ("auc", "bca"),
        ("accuracy", "percentile"),
        ("accuracy", "bca"),
        ("f1", "percentile"),
    ],
)
def test_bootstrap_matches_scipy_unstratified(scored, metric, method):
    y, a, b = scored

    def mann_whitney_auc(s, i):
        positives, negatives = s[i][y[i]], s[i][~y[i]]
        return sps.mannwhitneyu(positives, negatives).statistic / (len(positives) * len(negatives))

    def f1(s, i):
        said, truth = s[i] >= 0.5, y[i]
        return 2 * np.sum(said & truth) / (2 * np.sum(said & truth) + np.sum(said != truth))

    score = {"auc": mann_whitney_auc, "accuracy": lambda s, i: accuracy_score(y[i], s[i] >= 0.5), "f1": f1}[
        metric
    ]
    reference = sps.bootstrap(
        (np.arange(len(y)),),
        lambda i: score(b, i) - score(a, i),
        vectorized=False,
        n_resamples=4000,
        method="BCa" if method == "bca" else "percentile",
        random_state=np.random.default_rng(1),
    ).confidence_interval
    ours = stats.bootstrap_diff(y, a, b, metric=metric, n_resamples=4000, method=method, stratified=False)
    point = score(b, np.arange(len(y))) - score(a, np.arange(len(y)))
    assert ours.estimate == pytest.approx(point)
    width = reference.high - reference.low
    assert ours.low == pytest.approx(reference.low, abs=0.08 * width)
    assert ours.high == pytest.approx(reference.high, abs=0.08 * width)


def test_bootstrap_with_repeats_averages_the_metric(scored):
    y, a, b = scored
    rows_a = np.vstack([a, np.clip(a + 0.05, 0, 1), a[::-1] * 0 + a])
    rows_b = np.vstack([b, b, np.clip(b - 0.02, 0, 1)])
    result = stats.bootstrap_diff(y, rows_a, rows_b, n_resamples=500)
    expected = np.mean([roc_auc_score(y, rb) - roc_auc_score(y, ra) for ra, rb in zip(rows_a, rows_b)])
    assert result.estimate == pytest.approx(expected)


def test_stratified_bootstrap_keeps_class_counts():
    from cvkit.stats._samples import _resample_weights

    positive = np.arange(40) < 9
    weights = _resample_weights((~positive).astype(int), positive, 200, True, np.random.default_rng(0))
    assert (weights[:, positive].sum(1) == 9).all() and (weights.sum(1) == 40).all()


# -- P(A > B), multiplicity, variance components, power -------------------------------------------
def test_prob_outperform_is_descriptive_without_an_interval():
    """Item 2: a bootstrap over the correlated job pairs of one CV run excluded 0.5 in 25-53% of
    null runs; P(v > b) is now a description with no interval at all."""
    import dataclasses

    r = stats.prob_outperform([0.8, 0.8, 0.7, 0.9], [0.9, 0.8, 0.6, 0.95])
    assert r.statistic == pytest.approx((1 + 0.5 + 0 + 1) / 4) and r.n == 4
    assert {f.name for f in dataclasses.fields(r)} == {"statistic", "n"}
    assert stats.prob_outperform(np.zeros(20), np.ones(20)).statistic == 1.0


def test_bounded_metric_intervals_stay_inside_0_and_1():
    """Item 9: specificity near 1 gave [0.788, 1.011]; the logit-scale interval stays inside."""
    import pandas as pd

    from cvkit.comparison import cv_interval
    from cvkit.stats import bounded_interval

    scores = np.array([1.0, 1.0, 0.75, 1.0, 0.875, 1.0, 0.9, 1.0, 1.0, 0.8, 1.0, 1.0, 0.95, 1.0, 0.85])
    frame = pd.DataFrame(
        dict(model="m", repeat=np.repeat([0, 1, 2], 5), fold=np.tile(range(5), 3), specificity=scores)
    )
    results = type("Results", (), dict(metrics=frame, fold_sizes=(80.0, 20.0)))()
    mean, low, high = cv_interval(results, "m", "specificity")
    plain = stats.corrected_ttest(scores, 80, 20)
    assert plain.high > 1  # the symmetric interval leaves the metric's range
    assert mean == pytest.approx(scores.mean()) and 0 <= low < mean < high <= 1
    # on the logit scale: symmetric around logit(mean), half-width t * se / (mean (1 - mean))
    half = sps.t.ppf(0.975, 14) * plain.se / (mean * (1 - mean))
    assert np.log(high / (1 - high)) - np.log(mean / (1 - mean)) == pytest.approx(half)
    assert bounded_interval(1.0, 0.01, 14) == (pytest.approx(1 - sps.t.ppf(0.975, 14) * 0.01), 1.0)
    # where the metric is far from its bounds the interval is close to the symmetric one
    middle = bounded_interval(0.5, 0.02, 14)
    half = sps.t.ppf(0.975, 14) * 0.02
    assert middle == pytest.approx((0.5 - half, 0.5 + half), abs=1e-3)


def test_truncated_split_component_is_not_read_as_all_seed():
    """Item 10: a between-split estimate below 0 is truncated; that must not read "100% seed"."""
    from cvkit.report._narrative import noise_sentence

    rng = np.random.default_rng(1)
    splits = np.repeat(np.arange(6), 3)
    scores = 0.8 + rng.normal(0, 0.03, 18)
    scores -= np.repeat([scores[splits == s].mean() - 0.8 for s in range(6)], 3)  # no split spread
    v = stats.variance_components(scores, splits)
    assert v.between_split == 0 and v.split_truncated and np.isnan(v.seed_share)
    text = noise_sentence(v, "resnet18", "auc", 3)
    assert "100%" not in text and "estimated as 0" in text
    clear = stats.variance_components(scores + np.repeat(rng.normal(0, 0.1, 6), 3), splits)
    assert not clear.split_truncated and 0 < clear.seed_share < 1
    assert f"seed share {clear.seed_share:.0%}" in noise_sentence(clear, "resnet18", "auc", 3)


def test_sample_level_bootstrap_uses_the_argmax_rule_for_three_classes():
    """Item 8: with three classes, accuracy and the others come from the most probable class, as in
    ``classification_metrics``, not from positive-class probability >= 0.5."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    logits = rng.normal(0, 1, (300, 3)) + 1.2 * np.eye(3)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    positive = 2
    predicted = stats.predict_classes(probs, positive)
    reference = stats.classification_metrics(labels, probs, positive)
    for metric in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1"):
        result = stats.bootstrap_score(
            labels == positive,
            probs[:, positive],
            metric=metric,
            n_resamples=200,
            labels=labels,
            predicted=predicted,
        )
        assert result.estimate == pytest.approx(reference[metric]), metric
        assert result.low <= result.estimate <= result.high
    one_vs_rest = stats.bootstrap_score(
        labels == positive, probs[:, positive], metric="accuracy", n_resamples=50
    )
    assert one_vs_rest.estimate != pytest.approx(reference["accuracy"])  # the old, inconsistent rule
    # the paired difference of a model with itself is 0 under the same rule
    same = stats.bootstrap_diff(
        labels == positive,
        probs[:, positive],
        probs[:, positive],
        metric="accuracy",
        n_resamples=100,
        labels=labels,
        predicted=(predicted, predicted),
    )
    assert same.estimate == 0 and same.low == same.high == 0
    # two classes: the rule is "positive when its probability is >= 0.5", ties included
    two = np.array([[0.5, 0.5], [0.7, 0.3], [0.2, 0.8]])
    assert stats.predict_classes(two, 1).tolist() == [1, 0, 1]
    assert stats.predict_classes(two, 0).tolist() == [0, 0, 1]


def test_holm_and_bh_by_their_formulas():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    order = np.argsort(p)
    m = len(p)
    holm = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        holm[i] = running
    assert stats.holm(p) == pytest.approx(holm)
    bh = np.empty(m)
    running = 1.0
    for rank, i in reversed(list(enumerate(order))):
        running = min(running, p[i] * m / (rank + 1))
        bh[i] = running
    assert stats.benjamini_hochberg(p) == pytest.approx(bh)


def test_holm_matches_statsmodels_on_random_families_with_ties_and_nan_free_edges(monkeypatch):
    from statsmodels.stats.multitest import multipletests

    # multipletests runs a full gc.collect() on every call: a second each in a test process
    # holding torch models (177 s for these 250 calls in CI). The adjusted p-values do not need it.
    monkeypatch.setattr("gc.collect", lambda *args: 0)
    rng = np.random.default_rng(11)
    for m in (1, 2, 3, 7, 20):
        for _ in range(50):
            p = rng.uniform(size=m) ** 3
            p[rng.uniform(size=m) < 0.2] = p[0]  # ties
            assert stats.holm(p) == pytest.approx(multipletests(p, method="holm")[1], abs=1e-15)
    assert stats.holm([]).shape == (0,)
    assert stats.holm([1.0, 0.9]).tolist() == [1.0, 1.0]


@pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.ConvergenceWarning")
def test_variance_components_match_statsmodels_mixedlm():
    import pandas as pd
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(5)
    split_effect = np.repeat(rng.normal(0, 0.03, 15), 4)
    scores = 0.85 + split_effect + rng.normal(0, 0.015, 60)
    splits = np.repeat(np.arange(15), 4)
    ours = stats.variance_components(scores, splits)
    fit = smf.mixedlm("score ~ 1", pd.DataFrame({"score": scores, "split": splits}), groups=splits).fit(
        reml=True
    )
    assert ours.within_split == pytest.approx(fit.scale, rel=1e-4)
    assert ours.between_split == pytest.approx(float(fit.cov_re.iloc[0, 0]), rel=1e-3)
    assert ours.seed_sd == pytest.approx(np.sqrt(fit.scale), rel=1e-4)


@pytest.mark.parametrize(
    "folds, repeats, expected", [(5, 1, 2.52), (5, 3, 1.70), (5, 10, 1.49), (10, 10, 0.98)]
)
def test_minimal_detectable_effect_reference_values(folds, repeats, expected):
    assert stats.minimal_detectable_effect(folds, repeats).effect_sd_units == pytest.approx(
        expected, abs=0.01
    )


def test_effective_sample_size_never_exceeds_k_minus_1():
    assert stats.minimal_detectable_effect(5, 3).effective_n == pytest.approx(3.16, abs=0.01)
    assert stats.minimal_detectable_effect(10, 10).effective_n == pytest.approx(8.26, abs=0.01)
    assert stats.minimal_detectable_effect(5, 1000).effective_n < 4
    five, ten = stats.design_needed(0.5, 1.0)
    assert five.n_repeats is None and five.limit > 0.5  # no number of 5-fold repeats suffices
    assert ten.n_repeats is None and ten.limit > 0.5
    easy = stats.design_needed(2.0, 1.0)
    assert easy[0].n_repeats is not None and easy[0].n_repeats <= 3


def test_mcnemar_detectable_difference_connor():
    delta = stats.mcnemar_detectable_difference(780, 0.15)
    z_a, z_b = sps.norm.ppf(0.975), sps.norm.ppf(0.8)
    n = (z_a * np.sqrt(0.15) + z_b * np.sqrt(0.15 - delta**2)) ** 2 / delta**2
    assert n == pytest.approx(780) and 0.025 < delta < 0.045


def test_friedman_matches_scipy_and_demsar_critical_difference():
    scores = np.array([[0.80, 0.82, 0.79, 0.70], [0.81, 0.85, 0.80, 0.72], [0.79, 0.83, 0.81, 0.69]])
    result = stats.friedman(scores)
    reference = sps.friedmanchisquare(*scores.T)
    assert result.statistic == pytest.approx(reference.statistic) and result.pvalue == pytest.approx(
        reference.pvalue
    )
    assert result.mean_ranks.tolist() == pytest.approx([(2 + 2 + 3) / 3, 1.0, (3 + 3 + 2) / 3, 4.0])
    assert result.critical_difference == pytest.approx(2.569 * np.sqrt(4 * 5 / (6 * 3)))
    with pytest.raises(ValueError, match="at least 3 models"):
        stats.friedman(scores[:, :2])


def test_t_test_power_grows_with_the_effect_at_one_degree_of_freedom():
    # scipy's nct.cdf gives NaN far in the lower tail at df = 1 (noncentrality 8, 12): the power
    # once became 1.0 there and a 2x1 design's detectable effect landed on an arbitrary root.
    from cvkit.stats._power import two_sided_t_power

    for df in (1.0, 1.3, 4.0):
        powers = [two_sided_t_power(nc, df) for nc in np.linspace(0, 40, 161)]
        assert all(np.isfinite(powers)) and np.all(np.diff(powers) >= -1e-12)
        assert powers[0] == pytest.approx(0.05)
    critical = sps.t.ppf(0.975, 9)
    expected = sps.nct.sf(critical, 9, 2.5) + sps.nct.cdf(-critical, 9, 2.5)  # finite here: the textbook sum
    assert two_sided_t_power(2.5, 9) == pytest.approx(expected, rel=1e-9)
    assert two_sided_t_power(-2.5, 9) == pytest.approx(expected, rel=1e-9)
