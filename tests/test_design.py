"""Design advice (cvkit.stats advise_design / design_power) and the seed-noise (A/A) check, against
simulations with known variance components."""

import numpy as np
import pytest
from scipy import stats

from cvkit.stats import (
    PairedJobScores,
    advise_design,
    corrected_ttest,
    corrected_ttest_power,
    design_power,
    difference_test,
    estimate_variance_model,
    seed_noise_check,
)

N, K = 430, 5
TEST_SD, SEED_SD, SPLIT_SD = 0.5, 0.03, 0.01  # per-sample, per-job seed, per-split model noise


def _run(rng, *, repeats, seeds, effect=0.0, folds=K, n=N, seed_sd=SEED_SD):
    """One simulated run: each sample has a paired difference (variant - baseline) drawn once per
    data set; a job's difference is its test fold's mean plus split and seed noise."""
    per_sample = effect + rng.normal(0, TEST_SD, size=n)
    rows = []
    for r in range(repeats):
        order = rng.permutation(n)
        for f, test in enumerate(np.array_split(order, folds)):
            split = rng.normal(0, SPLIT_SD)
            for s in range(seeds):
                d = per_sample[test].mean() + split + rng.normal(0, seed_sd)
                rows.append((r, f, s, d, per_sample[test].var(ddof=1) / len(test)))
    rows = np.array(rows)
    return PairedJobScores(
        rows[:, 0], rows[:, 1], rows[:, 2], np.zeros(len(rows)), rows[:, 3],
        n_train=n * (folds - 1) / folds, n_test=n / folds, diff_variance=rows[:, 4],
    )  # fmt: skip


def test_the_variance_model_recovers_the_components():
    rng = np.random.default_rng(0)
    models = [estimate_variance_model(_run(rng, repeats=3, seeds=3)) for _ in range(300)]
    assert np.mean([m.test_noise for m in models]) == pytest.approx(TEST_SD**2, rel=0.05)
    assert np.mean([m.seed_var for m in models]) == pytest.approx(SEED_SD**2, rel=0.05)
    # A repeat's mean varies within the data set by the split noise averaged over the folds (20
    # repeats: with 3 the estimate is often truncated at 0).
    many = [estimate_variance_model(_run(rng, repeats=20, seeds=3)) for _ in range(100)]
    assert np.mean([m.repeat_var for m in many]) == pytest.approx(SPLIT_SD**2 / K, rel=0.25)
    assert models[0].n_samples == N and models[0].n_folds == K


@pytest.mark.parametrize("design", [(3, 3), (6, 3), (3, 1)])
def test_projected_power_from_a_pilot_matches_simulated_power(design):
    repeats, seeds = design
    rng = np.random.default_rng(1)
    effect = 0.06
    pilots = [estimate_variance_model(_run(rng, repeats=2, seeds=2, effect=effect)) for _ in range(200)]
    projected = np.mean(
        [design_power(m, effect, n_folds=K, n_repeats=repeats, n_seeds=seeds) for m in pilots]
    )
    reached = np.mean(
        [difference_test(_run(rng, repeats=repeats, seeds=seeds, effect=effect)).p < 0.05 for _ in range(400)]
    )
    margin = 1.96 * np.sqrt(reached * (1 - reached) / 400)
    assert abs(projected - reached) <= 0.05 + margin


def test_more_folds_are_projected_with_the_test_noise_of_smaller_folds():
    rng = np.random.default_rng(2)
    model = estimate_variance_model(_run(rng, repeats=3, seeds=3))
    effect = 0.05
    ten = design_power(model, effect, n_folds=10, n_repeats=3, n_seeds=3, method="corrected_t")
    # Reusing the 5-fold sd of the per-split differences for 10 folds (the old advice) overstates it.
    five_fold_sd = np.sqrt(model.seed_var / 3 + model.split_rest)
    reused = corrected_ttest_power(effect, five_fold_sd, 10, 3)
    assert ten < reused - 0.05


def test_advice_is_for_the_stated_effect_and_says_when_only_more_data_helps():
    rng = np.random.default_rng(3)
    model = estimate_variance_model(_run(rng, repeats=3, seeds=3, seed_sd=0.1))
    # The data-set-level noise alone is TEST_SD^2 / N (se 0.024): 0.045 is out of reach on 430 samples.
    hard = advise_design(model, 0.045, metric="AUC")
    assert hard.cheapest is None and hard.best_on_this_data.power < 0.8
    assert "nothing short of more data" in hard.sentence and "0.045 AUC" in hard.sentence
    assert hard.data_needed == hard.data_design.data_factor and hard.data_design.power >= 0.8
    assert f"about {hard.data_needed:g}x the data" in hard.sentence
    # ... and with one step less data not even the best design of the grid reaches it.
    factors = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
    less = factors[factors.index(hard.data_needed) - 1]
    best = max(
        design_power(model, 0.045, n_folds=k, n_repeats=20, n_seeds=10, data_factor=less) for k in (5, 10)
    )
    assert best < 0.8
    easy = advise_design(model, 0.3)
    assert easy.current.power >= 0.8 and easy.sentence.startswith("The current design")
    middle = advise_design(model, 0.075)
    assert middle.current.power < 0.8 <= middle.cheapest.power
    assert (
        "To detect a difference of 0.075 AUC" in middle.sentence
        and middle.cheapest.describe() in middle.sentence
    )
    assert middle.by_lever["repeats"].n_repeats > 3


def _aa_run(rng, offset=0.0, k=5, r=3, seeds=3):
    """One model's per-job scores: big split effects (shared by every seed) plus seed noise."""
    repeat, fold, seed = (a.ravel() for a in np.meshgrid(range(r), range(k), range(seeds), indexing="ij"))
    split = rng.normal(0, 0.03, size=(r, k))[repeat, fold]
    scores = 0.85 + split + rng.normal(0, SEED_SD, size=len(repeat)) + offset * (seed % 2 == 0)
    return repeat, fold, seed, scores


def test_the_seed_noise_check_holds_its_level_where_the_overlap_corrected_t_cannot_fail():
    rng = np.random.default_rng(4)
    runs = [_aa_run(rng) for _ in range(2000)]
    checks = [seed_noise_check(*run) for run in runs]
    fpr = np.mean([c.p < 0.05 for c in checks])
    assert abs(fpr - 0.05) <= 1.96 * np.sqrt(0.05 * 0.95 / 2000)
    old = []
    for repeat, fold, seed, scores in runs:
        keys = repeat * 10 + fold
        d = [scores[(keys == key) & (seed == 1)].mean() - scores[(keys == key) & (seed == 0)].mean()
             for key in np.unique(keys)]  # fmt: skip
        old.append(corrected_ttest(d, 344, 86).pvalue < 0.05)
    assert np.mean(old) < 0.01  # the old check: almost never fires
    assert checks[0].seeds_per_half == (1.0, 1.0) and checks[0].df == 14
    assert np.mean([c.seed_sd for c in checks]) == pytest.approx(SEED_SD, rel=0.03)


def test_the_seed_noise_check_catches_an_offset_of_one_seed_sd_at_its_stated_power():
    rng = np.random.default_rng(5)
    checks = [seed_noise_check(*_aa_run(rng, offset=SEED_SD)) for _ in range(3000)]
    stated = checks[0].power_one_sd
    # J = 15, halves of one seed each (the third is left out): noncentrality sqrt(15 / 2), df 14.
    critical = stats.t.ppf(0.975, 14)
    expected = stats.nct.sf(critical, 14, np.sqrt(7.5)) + stats.nct.cdf(-critical, 14, np.sqrt(7.5))
    assert stated == pytest.approx(expected)
    reached = np.mean([c.p < 0.05 for c in checks])
    # The stated power is exact for normal seed noise: a 3-se band keeps this test from flaking.
    assert abs(reached - stated) <= 3 * np.sqrt(stated * (1 - stated) / 3000)
    assert stated > 0.7


def test_the_seed_noise_check_needs_two_halves():
    with pytest.raises(ValueError, match="at least 2 splits"):
        seed_noise_check([0, 0], [0, 1], [0, 0], [0.8, 0.9])


def test_a_run_without_any_variance_detects_any_difference_instead_of_crashing():
    """Two models that agree on every job (tiny data, one repeat): the projection has no noise to
    scale, so the smallest detectable difference is 0 (main: brentq's 'f(a) and f(b) must have
    different signs' ended the command in a traceback)."""
    from cvkit.stats import VarianceModel, detectable_effect

    silent = VarianceModel(
        n_samples=22, n_folds=2, n_repeats=1, n_seeds=1, test_noise=None, seed_var=0.0,
        repeat_var=0.0, training_var=0.0, split_rest=0.0,
    )  # fmt: skip
    assert detectable_effect(silent) == 0.0
    noisy = VarianceModel(
        n_samples=22, n_folds=2, n_repeats=1, n_seeds=1, test_noise=None, seed_var=0.0,
        repeat_var=0.0, training_var=0.0, split_rest=0.01,
    )  # fmt: skip
    assert 0 < detectable_effect(noisy) <= float("inf")


def test_the_detectable_effect_of_another_design_is_the_effect_it_has_the_stated_power_for():
    from cvkit.stats import VarianceModel, detectable_effect

    model = VarianceModel(
        n_samples=428, n_folds=5, n_repeats=2, n_seeds=2, test_noise=0.3, seed_var=4e-4,
        repeat_var=2e-5, training_var=5e-5, split_rest=1e-3,
    )  # fmt: skip
    own = detectable_effect(model)
    assert own == detectable_effect(model, n_folds=5, n_repeats=2, n_seeds=2)
    bigger = detectable_effect(model, n_repeats=6, n_seeds=3)
    assert 0 < bigger < own  # more repeats and seeds: a smaller effect reaches 80%
    assert design_power(model, bigger, n_folds=5, n_repeats=6, n_seeds=3) == pytest.approx(0.8, abs=1e-4)
    assert design_power(model, own, n_folds=5, n_repeats=2, n_seeds=2) == pytest.approx(0.8, abs=1e-4)
