"""The group-sequential rule (cvkit.stats: sequential_boundaries, sequential_power,
sequential_look, futility_bound): boundaries against rpact/gsDesign's published values, error
rates and interval coverage against simulations of the looks' joint distribution."""

import numpy as np
import pytest
from scipy import stats as sps

from cvkit import stats

# rpact getDesignGroupSequential(kMax = 5, alpha = 0.05, sided = 2, typeOfDesign = "asOF") and
# gsDesign(k = 5, test.type = 2, alpha = 0.025, sfu = sfLDOF): the same boundaries.
RPACT_OF_5 = [4.8769, 3.3569, 2.6803, 2.2898, 2.0310]
RPACT_OF_2 = [2.9626, 1.9686]  # kMax = 2, information 0.5 and 1


def test_boundaries_match_rpact():
    assert stats.sequential_boundaries(np.arange(1, 6) / 5) == pytest.approx(RPACT_OF_5, abs=2e-4)
    assert stats.sequential_boundaries([0.5, 1.0]) == pytest.approx(RPACT_OF_2, abs=2e-4)
    assert stats.sequential_boundaries([1.0]) == pytest.approx([sps.norm.isf(0.025)], abs=1e-6)


def _looks(rng, fractions, drift, n):
    """Z at each look: a Brownian motion on the information scale with drift ``drift``."""
    t = np.asarray(fractions)
    steps = np.diff(np.concatenate([[0.0], t]))
    s = np.cumsum(rng.normal(drift * steps, np.sqrt(steps), size=(n, len(t))), axis=1)
    return s / np.sqrt(t)


@pytest.mark.parametrize("fractions", [[0.3, 0.55, 0.8, 1.0], [0.7, 0.85, 0.95, 1.0]])
def test_the_boundaries_spend_alpha_and_the_power_matches_a_simulation(fractions):
    rng = np.random.default_rng(7)
    c = stats.sequential_boundaries(fractions)
    z = _looks(rng, fractions, 0.0, 200_000)
    crossed = (np.abs(z) >= c).any(axis=1)
    assert crossed.mean() == pytest.approx(0.05, abs=0.0025)  # 4.6 simulation se
    upper, lower, _ = stats.sequential_power(fractions, c, 0.0)
    assert upper + lower == pytest.approx(0.05, abs=1e-6)
    z = _looks(rng, fractions, 2.8, 200_000)
    first = np.argmax(np.abs(z) >= c, axis=1)
    up = (np.abs(z) >= c).any(axis=1) & (z[np.arange(len(z)), first] > 0)
    assert stats.sequential_power(fractions, c, 2.8)[0] == pytest.approx(up.mean(), abs=0.005)


def test_futility_is_non_binding_and_its_projected_power_matches_a_simulation():
    fractions = [0.5, 0.75, 1.0]
    c = stats.sequential_boundaries(fractions)
    drift = 2.5
    finals = [
        float(stats.sequential_boundaries([*fractions[:k], t, 1.0])[-1]) for k, t in enumerate(fractions[:-1])
    ]
    bounds = [stats.futility_bound(t, f, drift) for t, f in zip(fractions[:-1], finals)] + [0.0]
    rng = np.random.default_rng(3)
    z = _looks(rng, fractions, drift, 200_000)
    alive = np.ones(len(z), dtype=bool)
    better = np.zeros(len(z), dtype=bool)
    for k in range(len(fractions)):
        better |= alive & (z[:, k] >= c[k])
        alive &= (np.abs(z[:, k]) < c[k]) & (np.abs(z[:, k]) >= bounds[k])
    upper, _, _ = stats.sequential_power(fractions, c, drift, bounds)
    assert upper == pytest.approx(better.mean(), abs=0.006)
    assert upper < stats.sequential_power(fractions, c, drift)[0]  # futility costs some power
    # a bound is where the conditional power for the planned effect is 10%
    k = next(i for i, b in enumerate(bounds) if b > 0)
    assert stats.conditional_power(bounds[k], fractions[k], finals[k], drift) == pytest.approx(stats.FUTILITY)


def test_repeated_confidence_intervals_cover_at_every_look_at_once():
    fractions = [0.4, 0.7, 1.0]
    c = stats.sequential_boundaries(fractions)
    rng = np.random.default_rng(11)
    truth = 0.3
    z = _looks(rng, fractions, truth, 100_000)
    se = 1 / np.sqrt(np.asarray(fractions))  # information fraction t: se of the estimate 1 / sqrt(t)
    estimate = z * se
    covered = np.all(np.abs(estimate - truth) <= c * se, axis=1)
    assert covered.mean() == pytest.approx(0.95, abs=0.004)


@pytest.mark.parametrize(
    "estimate, decision",
    [(0.10, "better"), (-0.10, "worse"), (0.0005, "equivalent"), (0.0, "futile"), (0.03, "continue")],
)
def test_a_look_decides(estimate, decision):
    scale = 1.0 if decision != "equivalent" else 0.1  # a precise run: its final se is small too
    look = stats.sequential_look(
        estimate, 0.02 * scale, repeats=2, final_se=0.016 * scale, final=False, min_effect=0.05, rope=0.01
    )
    assert look.decision == decision
    assert look.low == pytest.approx(estimate - look.boundary * look.se)
    assert 0 < look.fraction < 1


def test_the_last_look_without_a_crossing_is_inconclusive_and_fractions_keep_increasing():
    first = stats.sequential_look(
        0.02, 0.02, repeats=2, final_se=0.016, final=False, min_effect=0.05, rope=0.01
    )
    # a noisier second look (its se went up) still counts as more information, never less
    second = stats.sequential_look(
        0.02, 0.03, repeats=3, final_se=0.016, previous=(first,), final=False, min_effect=0.05, rope=0.01
    )
    assert second.fraction > first.fraction
    last = stats.sequential_look(
        0.02,
        0.016,
        repeats=4,
        final_se=0.016,
        previous=(first, second),
        final=True,
        min_effect=0.05,
        rope=0.01,
    )
    assert last.fraction == 1.0 and last.decision == "inconclusive"


def test_a_look_that_already_holds_the_planned_information_is_the_last():
    # The se can fall to the projected final se before the maximum (a lucky run, or a projection
    # from a noisy pilot); once the information fraction is at 1 the look is final, not an error.
    first = stats.sequential_look(
        0.02, 0.02, repeats=2, final_se=0.016, final=False, min_effect=0.05, rope=0.01
    )
    early = stats.sequential_look(
        0.02, 0.0159, repeats=3, final_se=0.016, previous=(first,), final=False, min_effect=0.05, rope=0.01
    )
    assert early.fraction == 1.0 and early.decision in ("better", "inconclusive")
    assert early.decision == ("better" if early.z >= early.boundary else "inconclusive")
    almost = stats.sequential_look(
        0.02, 0.016 * (1 + 1e-8), repeats=3, final_se=0.016, previous=(first,), final=False,
        min_effect=0.05, rope=0.01,
    )  # fmt: skip
    assert almost.fraction == 1.0


def test_the_t_scale_boundary_is_wider_with_few_degrees_of_freedom():
    normal = stats.sequential_look(
        0.02, 0.02, repeats=2, final_se=0.016, final=False, min_effect=0.05, rope=0.01
    )
    few = stats.sequential_look(
        0.02, 0.02, repeats=2, final_se=0.016, final=False, min_effect=0.05, rope=0.01, df=8
    )
    assert few.boundary > normal.boundary
    assert sps.t.sf(few.boundary, 8) == pytest.approx(sps.norm.sf(normal.boundary), rel=1e-6)


def test_the_projected_detectable_effect_has_the_stated_power():
    variances = [0.02**2 * x for x in (1, 0.8, 0.7, 0.65)]
    effect = stats.sequential_detectable_effect(variances, 0.8)
    assert stats.sequential_design_power(variances, effect)[0] == pytest.approx(0.8, abs=1e-4)
    # more looks and a plateau of information: never below the fixed design's effect at the maximum
    fixed = (sps.norm.isf(0.025) + sps.norm.isf(0.2)) * np.sqrt(variances[-1])
    assert effect > fixed * 0.98


def test_the_projection_crosses_the_t_scale_boundaries_the_looks_use():
    # One look is the fixed design: the upper crossing of a normal statistic over the t critical value.
    se, effect, df = 0.02, 0.05, 9
    power, _ = stats.sequential_design_power([se**2], effect, futility=0.0, dfs=[df])
    assert power == pytest.approx(sps.norm.sf(sps.t.isf(0.025, df) - effect / se), abs=1e-6)
    # Infinite degrees of freedom are the normal projection; few of them cost power and so need
    # a larger effect for the same power.
    variances = [0.02**2 * x for x in (1, 0.8, 0.7, 0.65)]
    normal = stats.sequential_design_power(variances, 0.05)
    assert stats.sequential_design_power(variances, 0.05, dfs=[np.inf] * 4) == pytest.approx(normal)
    assert stats.sequential_design_power(variances, 0.05, dfs=[9, 14, 19, 24])[0] < normal[0]
    assert stats.sequential_detectable_effect(
        variances, dfs=[9, 14, 19, 24]
    ) > stats.sequential_detectable_effect(variances)


def test_a_run_stopped_early_at_full_information_says_so():
    from types import SimpleNamespace

    from cvkit.verdict_text import sequential_sentence

    first = stats.sequential_look(
        0.0, 0.02, repeats=2, final_se=0.016, final=False, min_effect=0.05, rope=0.001
    )
    early = stats.sequential_look(
        0.0, 0.0159, repeats=3, final_se=0.016, previous=(first,), final=False, min_effect=0.05, rope=0.001
    )
    assert early.decision == "inconclusive"
    text = sequential_sentence(SimpleNamespace(sequential=[first, early]), max_repeats=8)
    assert "stopped after 3 of at most 8 repeats" in text
    assert "the information planned for the maximum was already reached" in text
