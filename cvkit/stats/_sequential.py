"""Group-sequential analysis of the verdict's test: look after each stage of repeats and stop when
the answer is in.

The estimate after r repeats is the mean over its splits; a later look's estimate contains the
earlier one's repeats, so Cov(est_r1, est_r2) = Var(est_r2) for r1 < r2 (even with the data-set
level variance that more repeats cannot shrink), which is the canonical joint distribution of
group-sequential tests on the information scale I = 1 / se^2 (Jennison & Turnbull 2000, ch. 3).
So the usual machinery applies with the information fraction t = I / I_max, not r / R:

- efficacy: Lan-DeMets alpha spending with the O'Brien-Fleming-type function
  alpha(t) = 2 - 2 Phi(z_{alpha/2} / sqrt(t)), two-sided; boundaries by recursive numerical
  integration (Armitage, McPherson & Rowe 1969), recomputed from the fractions actually observed;
- futility (non-binding, so it cannot raise the false-positive rate): stop when the conditional
  power to reach the final boundary is below ``futility`` for a true difference of +min_effect and
  of -min_effect alike;
- equivalence: stop when the repeated confidence interval lies inside the ROPE;
- intervals: repeated confidence intervals est_k +/- c_k se_k, which cover the true difference at
  every look at once with probability 1 - alpha (Jennison & Turnbull 1989).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.optimize import brentq
from scipy.special import ndtr

FUTILITY = 0.10  # conditional power below which a look stops for futility
_GRID = 201  # points of the numerical integration per look (boundaries to 1e-8)


def obrien_fleming_spent(fraction: float, alpha: float) -> float:
    """Two-sided alpha spent by information fraction ``fraction``.

    Lan-DeMets' O'Brien-Fleming-type function on each side, alpha/2 each,
    4 - 4 Phi(z_{1 - alpha/4} / sqrt(t)) in all (the convention of gsDesign and rpact).

    Parameters
    ----------
    fraction : float
        The information fraction t = I / I_max; 0 or less spends nothing, above 1 counts as 1.
    alpha : float
        Overall two-sided significance level, in (0, 1).

    Returns
    -------
    float
        The cumulative alpha spent by ``fraction``, between 0 and ``alpha``.
    """
    if fraction <= 0:
        return 0.0
    z = stats.norm.ppf(1 - alpha / 4) / np.sqrt(min(fraction, 1.0))
    return float(min(alpha, 4 * stats.norm.sf(z)))


def sequential_boundaries(fractions, alpha: float = 0.05) -> np.ndarray:
    """Two-sided critical values |Z| >= c_k at looks with information ``fractions`` (increasing,
    the last at most 1) that spend alpha by the O'Brien-Fleming-type function.

    Parameters
    ----------
    fractions : sequence of float
        Information fractions of the looks, increasing, in (0, 1].
    alpha : float
        Overall two-sided significance level.

    Returns
    -------
    numpy.ndarray
        One critical value per look.
    """
    t = _check_fractions(fractions)
    boundaries: list[float] = []
    spent, state = 0.0, None
    for k in range(len(t)):
        target = obrien_fleming_spent(t[k], alpha) - spent
        previous_t = t[k - 1] if k else 0.0

        def excess(c, state=state, previous_t=previous_t, tk=t[k], target=target):
            upper, lower, _ = _look(state, previous_t, tk, c, 0.0, propagate=False)
            return upper + lower - target

        c = np.inf if target <= 1e-15 else float(brentq(excess, 0.1, 40.0, xtol=1e-10))
        boundaries.append(c)
        spent += target
        state = _look(state, previous_t, t[k], c, 0.0)[2]
    return np.asarray(boundaries)


def sequential_power(
    fractions, boundaries, drift: float, futility_bounds=None
) -> tuple[float, float, np.ndarray]:
    """Probabilities of crossing the upper and the lower boundary, and of stopping at each look.

    The probability of crossing the upper and the lower boundary at some look, and the probability
    of stopping at each look (for a difference or for futility), when Z at full information has
    mean ``drift`` (the true difference over the standard error at the last look).

    Parameters
    ----------
    fractions : sequence of float
        Information fractions of the looks, increasing, in (0, 1].
    boundaries : sequence of float
        The two-sided critical value |Z| >= c_k of each look (``sequential_boundaries``).
    drift : float
        Mean of Z at full information: the true difference over the standard error at the last
        look (0: no difference).
    futility_bounds : sequence of float or None, default=None
        Per look, stop for futility when |Z| is below it (0: never); None: no futility stops.

    Returns
    -------
    upper : float
        Probability of crossing the upper boundary at some look.
    lower : float
        Probability of crossing the lower boundary at some look.
    stops : numpy.ndarray
        Probability of stopping at each look, for a difference or for futility.

    Raises
    ------
    ValueError
        Fractions that do not increase within (0, 1].
    """
    t = _check_fractions(fractions)
    futility_bounds = np.zeros(len(t)) if futility_bounds is None else np.asarray(futility_bounds, float)
    crossings, futile = _crossing(t, list(boundaries), drift, futility_bounds)
    stops = crossings.sum(axis=1) + futile
    return float(crossings[:, 0].sum()), float(crossings[:, 1].sum()), stops


def futility_bound(fraction: float, final_boundary: float, drift: float, futility: float = FUTILITY) -> float:
    """The |Z| below which a look stops for futility.

    |Z| below which the conditional power for a true difference of +drift and of -drift (in
    standard errors at full information) are both below ``futility`` (see ``conditional_power``).

    Parameters
    ----------
    fraction : float
        Information fraction of the look, in (0, 1]; at 1 (the last look) there is no bound.
    final_boundary : float
        The critical |Z| of the last look that the conditional power aims at.
    drift : float
        The true difference of interest in standard errors at full information (its sign is
        ignored).
    futility : float, default=FUTILITY
        Conditional power below which the look stops for futility (0.10).

    Returns
    -------
    float
        The bound on |Z|, at least 0 (0: never stop for futility).
    """
    if fraction >= 1:
        return 0.0
    b = final_boundary - abs(drift) * (1 - fraction) + np.sqrt(1 - fraction) * stats.norm.ppf(futility)
    return float(max(0.0, b / np.sqrt(fraction)))


def conditional_power(z: float, fraction: float, final_boundary: float, drift: float) -> float:
    """Probability that the last look's |Z| exceeds ``final_boundary`` on the side of ``drift``.

    Given Z = ``z`` now at information ``fraction`` and a true difference of ``drift`` standard
    errors at full information (B-value formulation; later interim looks ignored).

    Parameters
    ----------
    z : float
        The test statistic at this look: estimate over standard error.
    fraction : float
        Information fraction of this look, in (0, 1].
    final_boundary : float
        The critical |Z| of the last look.
    drift : float
        The assumed true difference in standard errors at full information; its sign is the side
        the last look must cross.

    Returns
    -------
    float
        The conditional power, between 0 and 1 (at ``fraction`` 1: 1 when ``z`` already crosses on
        the side of ``drift``, else 0).
    """
    if fraction >= 1:
        return float(z * np.sign(drift) >= final_boundary)
    b = z * np.sqrt(fraction)
    mean = b + drift * (1 - fraction)
    sd = np.sqrt(1 - fraction)
    if drift >= 0:
        return float(stats.norm.sf((final_boundary - mean) / sd))
    return float(stats.norm.cdf((-final_boundary - mean) / sd))


@dataclass(frozen=True)
class SequentialLook:
    """One look of a sequential run: the verdict's test on the repeats so far, the boundary it met
    or not, and what was decided."""

    repeats: int
    estimate: float
    se: float
    z: float
    fraction: float  # information so far over the projected information at the maximum
    boundary: float  # |z| that stops for a difference at this look
    conditional_power: float  # the larger of those for +min_effect and -min_effect
    low: float  # repeated confidence interval (1 - alpha over all looks at once)
    high: float
    decision: str  # "continue" | "better" | "worse" | "equivalent" | "futile" | "inconclusive"


def sequential_look(
    estimate: float,
    se: float,
    *,
    repeats: int,
    final_se: float,
    previous: tuple[SequentialLook, ...] = (),
    final: bool,
    alpha: float = 0.05,
    min_effect: float,
    rope: float,
    futility: float = FUTILITY,
    df: float = np.inf,
) -> SequentialLook:
    """The decision at one look.

    Parameters
    ----------
    estimate : float
        The verdict's test on the repeats so far: its estimate of the difference.
    se : float
        The standard error of that estimate.
    repeats : int
        Repeats so far.
    final_se : float
        The standard error projected for the maximum number of repeats (the design model's);
        it sets the information fraction se_final^2 / se^2.
    previous : tuple of SequentialLook, default=()
        The earlier looks of this run (their fractions and boundaries stay as they were).
    final : bool
        Whether this is the last look (the maximum number of repeats): its fraction is 1.
    alpha : float, default=0.05
        Overall two-sided level over all looks.
    min_effect : float
        Smallest effect of interest, for the futility rule's conditional power.
    rope : float
        Region of practical equivalence, for the equivalence rule.
    futility : float, default=FUTILITY
        Conditional power below which the look stops for futility (0.10).
    df : float, default=numpy.inf
        Degrees of freedom of the test's statistic: each boundary, found for a normal statistic,
        is applied at the same tail probability of t with these degrees of freedom.

    Returns
    -------
    SequentialLook
        The look's statistic, information fraction, boundary, conditional power, repeated
        confidence interval and decision: ``better`` or ``worse`` (boundary crossed),
        ``equivalent`` (the interval inside the ROPE), ``futile``, ``continue``, or at the last
        look ``inconclusive``.
    """
    before = [look.fraction for look in previous]
    floor = before[-1] + 1e-6 if before else 1e-6
    observed = final_se**2 / se**2 if se > 0 else 1.0
    # A look that already holds the information planned for the maximum (its se at or below the
    # projected final se, after earlier looks took fractions up to just under 1) is the last look:
    # the rest of alpha is spent on it, as a group-sequential design does when information runs ahead.
    final = final or max(observed, floor) >= 1.0 - 1e-6
    fraction = 1.0 if final else float(max(observed, floor))
    boundaries = sequential_boundaries([*before, fraction], alpha)
    c = _on_t_scale(float(boundaries[-1]), df)
    if se > 0:
        z = estimate / se
    else:  # models that agree on every job: no difference at all, or one without any noise
        z = 0.0 if estimate == 0 else float(np.sign(estimate) * np.inf)
    low, high = estimate - c * se, estimate + c * se
    # The final look's boundary for the conditional power: looks at equal information steps from
    # here to the maximum, as many as remain.
    drift = min_effect / final_se if final_se > 0 else np.inf
    if final:
        power_left = float(abs(z) >= c)
    else:
        final_c = _final_boundary(before, fraction, alpha)
        power_left = max(
            conditional_power(z, fraction, final_c, drift), conditional_power(z, fraction, final_c, -drift)
        )
    if abs(z) >= c:
        decision = "better" if z > 0 else "worse"
    elif -rope < low and high < rope:
        decision = "equivalent"
    elif final:
        decision = "inconclusive"
    elif power_left < futility:
        decision = "futile"
    else:
        decision = "continue"
    return SequentialLook(repeats, estimate, se, z, fraction, c, power_left, low, high, decision)


def _on_t_scale(c: float, df: float) -> float:
    """A normal critical value moved to t with ``df`` degrees of freedom at the same tail."""
    if not np.isfinite(c) or not np.isfinite(df):
        return c
    return float(stats.t.isf(stats.norm.sf(c), df))


def _final_boundary(before, fraction: float, alpha: float) -> float:
    """The last look's boundary the conditional power aims at: as if it came next."""
    return float(sequential_boundaries([*before, fraction, 1.0], alpha)[-1])


def _check_fractions(fractions) -> np.ndarray:
    t = np.asarray(fractions, dtype=float)
    if t.ndim != 1 or len(t) == 0 or t[0] <= 0 or t[-1] > 1 + 1e-12 or np.any(np.diff(t) <= 0):
        raise ValueError(f"information fractions must increase within (0, 1], got {list(fractions)}")
    return t


def _crossing(t: np.ndarray, boundaries, drift: float, futility_bounds=None):
    """(looks, 2): the probability of first crossing the upper / lower boundary at each look, and
    (looks,) of stopping there for futility, for S_k = Z_k sqrt(t_k), a Brownian motion with
    drift ``drift`` on the information scale."""
    out = np.zeros((len(t), 2))
    futile = np.zeros(len(t))
    state, previous_t = None, 0.0
    for k, (tk, ck) in enumerate(zip(t, boundaries)):
        upper, lower, state = _look(state, previous_t, tk, ck, drift)
        out[k] = upper, lower
        if futility_bounds is not None and futility_bounds[k] > 0 and state is not None:
            grid, density = state
            stopped = np.abs(grid) < futility_bounds[k] * np.sqrt(tk)
            futile[k] = float((density * stopped) @ _simpson(grid))
            state = (grid, np.where(stopped, 0.0, density))
        previous_t = tk
    return out, futile


def _look(state, previous_t: float, tk: float, c: float, drift: float, propagate: bool = True):
    """One look of the recursive integration: the probabilities of crossing |S| >= c sqrt(t_k) up
    and down, from the density of S on the continuation region so far (``state``: grid and
    density, None before the first look), and that density carried to this look."""
    b = c * np.sqrt(tk) if np.isfinite(c) else 12 * np.sqrt(tk) + abs(drift) * tk
    step = tk - previous_t
    shift, sd = drift * step, np.sqrt(step)
    if state is None:  # first look: S_1 ~ N(drift t_1, t_1)
        upper, lower = ndtr((shift - b) / sd), ndtr((-b - shift) / sd)
        if not propagate:
            return float(upper), float(lower), None
        grid = np.linspace(-b, b, _GRID)
        return float(upper), float(lower), (grid, _pdf((grid - shift) / sd) / sd)
    grid, density = state
    mass = density * _simpson(grid)
    upper = float(mass @ ndtr((grid + shift - b) / sd))
    lower = float(mass @ ndtr((-b - grid - shift) / sd))
    if not propagate:
        return upper, lower, None
    new_grid = np.linspace(-b, b, _GRID)
    kernel = _pdf((new_grid[:, None] - grid[None, :] - shift) / sd) / sd
    return upper, lower, (new_grid, kernel @ mass)


def _pdf(x):
    """The standard normal density (scipy.stats.norm.pdf without its per-call overhead)."""
    return np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)


def _simpson(grid: np.ndarray) -> np.ndarray:
    h = grid[1] - grid[0]
    w = np.ones(len(grid))
    w[1:-1:2], w[2:-1:2] = 4, 2
    return w * h / 3


def sequential_design_power(
    variances,
    effect: float,
    alpha: float = 0.05,
    *,
    min_effect: float | None = None,
    futility: float = FUTILITY,
    dfs=None,
) -> tuple[float, float]:
    """Projected power of the sequential rule for a true difference, and the looks it takes.

    The power for a true difference ``effect``, with its futility rule (conditional power below
    ``futility`` for ``min_effect``, default ``effect``), and the expected number of looks it
    takes.

    ``variances`` are the verdict's projected variances at each look (decreasing), the last at the
    maximum; the looks' information fractions are var_max / var_k.

    Parameters
    ----------
    variances : sequence of float
        The projected variance of the verdict's estimate at each look (``design_variance``), the
        last at the maximum number of repeats.
    effect : float
        The true difference, in the metric's units.
    alpha : float, default=0.05
        Overall two-sided significance level over all looks.
    min_effect : float or None, default=None
        The difference the futility rule's conditional power aims at; None (or 0): ``effect``.
    futility : float, default=FUTILITY
        Conditional power below which a look stops for futility (0.10).
    dfs : sequence of float or None, default=None
        Degrees of freedom of the verdict's test at each look (``design_variance``'s); each
        boundary then moves to the t scale, as ``sequential_look`` moves it. None: normal
        statistics (optimistic for looks with few folds: at 2 repeats of 5 folds the first
        boundary grows by about a third).

    Returns
    -------
    power : float
        Probability of stopping for "better" at some look.
    expected_looks : float
        The mean number of looks taken (from 1; a run that never stops takes them all).
    """
    rule = _ProjectedRule(variances, alpha, dfs)
    return rule.power(effect, min_effect or effect, futility)


class _ProjectedRule:
    """The looks' fractions and boundaries of a projected sequential design, computed once."""

    def __init__(self, variances, alpha: float, dfs=None):
        v = np.asarray(variances, dtype=float)
        self.fractions = _projected_fractions(v)
        self.boundaries = sequential_boundaries(self.fractions, alpha)
        # The looks test a t statistic against the boundary moved to t (sequential_look): the
        # projection crosses the same moved boundary.
        self.crossing = (
            self.boundaries
            if dfs is None
            else np.array([_on_t_scale(c, df) for c, df in zip(self.boundaries, dfs, strict=True)])
        )
        # the boundary the conditional power aims at from each look but the last (as sequential_look)
        self.final = [
            _final_boundary(self.fractions[:k], t, alpha) if t < 1 else np.inf
            for k, t in enumerate(self.fractions)
        ]
        self.scale = float(np.sqrt(v[-1]))

    def power(self, effect: float, min_effect: float, futility: float) -> tuple[float, float]:
        drift = min_effect / self.scale
        bounds = [
            futility_bound(t, c, drift, futility) if t < 1 else 0.0
            for t, c in zip(self.fractions, self.final)
        ]
        upper, _, stops = sequential_power(self.fractions, self.crossing, effect / self.scale, bounds)
        looks = np.arange(1, len(self.fractions) + 1)
        return upper, float(stops @ looks + (1 - stops.sum()) * len(looks))


def look_at_jobs(
    jobs,
    *,
    max_repeats: int,
    previous: tuple[SequentialLook, ...] = (),
    alpha: float = 0.05,
    min_effect: float,
    rope: float,
    futility: float = FUTILITY,
) -> SequentialLook:
    """One look of a sequential run at the paired job scores so far.

    The jobs are the ``PairedJobScores`` of the repeats run until now; the look is the verdict's
    test, the variance model of these jobs projected to ``max_repeats`` for the information
    fraction, and ``sequential_look``'s decision.

    Parameters
    ----------
    jobs : PairedJobScores
        The paired scores of the jobs run so far (at least 2 splits).
    max_repeats : int
        The most repeats the run may take; the look at that many repeats is the last.
    previous : tuple of SequentialLook, default=()
        The earlier looks of this run.
    alpha : float, default=0.05
        Overall two-sided level over all looks, in (0, 1).
    min_effect : float
        Smallest effect of interest, for the futility rule's conditional power.
    rope : float
        Region of practical equivalence, for the equivalence rule.
    futility : float, default=FUTILITY
        Conditional power below which the look stops for futility (0.10).

    Returns
    -------
    SequentialLook
        This look's statistic, boundary, interval and decision (see ``sequential_look``).

    Raises
    ------
    ValueError
        Fewer than 2 splits, or ``alpha`` outside (0, 1) (from ``difference_test``).
    """
    from ._design import design_variance, estimate_variance_model
    from ._verdict import difference_test

    test = difference_test(jobs, alpha=alpha)
    model = estimate_variance_model(jobs)
    final_variance, _ = design_variance(
        model,
        n_folds=model.n_folds,
        n_repeats=max_repeats,
        n_seeds=max(1, int(round(model.n_seeds))),
        method=test.method,
    )
    repeats = model.n_repeats
    return sequential_look(
        test.estimate, test.se, repeats=repeats, final_se=float(np.sqrt(final_variance)), previous=previous,
        final=repeats >= max_repeats, alpha=alpha, min_effect=min_effect, rope=rope, futility=futility,
        df=test.df,
    )  # fmt: skip


def sequential_detectable_effect(
    variances, power: float = 0.8, alpha: float = 0.05, futility: float = FUTILITY, dfs=None
) -> float:
    """The smallest true difference the sequential rule detects as "better" with ``power``.

    The rule is planned for that difference (its futility rule aimed at it), for looks with the
    projected ``variances`` (see ``sequential_design_power``).

    Parameters
    ----------
    variances : sequence of float
        The projected variance of the verdict's estimate at each look, the last at the maximum
        number of repeats.
    power : float, default=0.8
        The power to reach, in (0, 1).
    alpha : float, default=0.05
        Overall two-sided significance level over all looks.
    futility : float, default=FUTILITY
        Conditional power below which a look stops for futility (0.10).
    dfs : sequence of float or None, default=None
        Degrees of freedom of the verdict's test at each look (see ``sequential_design_power``).

    Returns
    -------
    float
        The smallest detectable difference, in the metric's units.

    Raises
    ------
    ValueError
        No difference between 0.001 and 20 standard errors (at the maximum) reaches ``power``
        (e.g. a ``power`` at or below alpha / 2).
    """
    rule = _ProjectedRule(variances, alpha, dfs)

    def shortfall(effect):
        return rule.power(effect, effect, futility)[0] - power

    return float(brentq(shortfall, 1e-3 * rule.scale, 20 * rule.scale, xtol=1e-6 * rule.scale))


def _projected_fractions(variances: np.ndarray) -> np.ndarray:
    """Information fractions var_max / var_k of looks with projected variances, kept increasing
    (a plateau of information, from variance more repeats cannot shrink, stays a plateau)."""
    fractions = np.minimum(variances[-1] / variances, 1.0) + np.arange(len(variances)) * 1e-9
    fractions = np.maximum.accumulate(fractions)
    fractions[-1] = 1.0
    return fractions
