"""Power of a cross-validation design: what it can detect, and what it would take to detect more.

The corrected t-test's effective sample size 1/(1/J + n_test/n_train) never exceeds
n_train/n_test = k - 1: more repeats of 5-fold CV buy little power, whereas more folds do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats


@dataclass(frozen=True)
class DetectableEffect:
    effect: float  # in the metric's units when ``sd_diff`` was given, else in units of sd
    effect_sd_units: float  # the same, in units of the per-fold difference's standard deviation
    effective_n: float  # 1 / (1/J + n_test/n_train)
    n_folds: int
    n_repeats: int
    power: float
    alpha: float


@dataclass(frozen=True)
class DesignOption:
    n_folds: int
    n_repeats: int | None  # None: no number of repeats reaches the power
    limit: float  # the detectable effect with infinitely many repeats of this many folds


def two_sided_t_power(noncentrality: float, df: float, alpha: float = 0.05) -> float:
    """P(|T| > t_crit) for a noncentral t statistic: the power of a two-sided t test.

    Each tail is taken as an upper tail (the lower one of ``noncentrality`` is the upper one of
    its negative), so that neither goes through scipy's ``nct.cdf``, which returns NaN far in the
    tail at few degrees of freedom; where ``nct.sf`` still gives NaN, the normal approximation
    of that tail stands in (there the tail is all but 0 or 1). Power then grows with the
    noncentrality at every ``df``.
    """
    critical = stats.t.ppf(1 - alpha / 2, df)
    nc = abs(noncentrality)
    near, far = stats.nct.sf(critical, df, nc), stats.nct.sf(critical, df, -nc)
    if np.isnan(near):
        near = stats.norm.sf(critical - nc)
    if np.isnan(far):
        far = stats.norm.sf(critical + nc)
    return float(min(near + far, 1.0))


def corrected_ttest_power(
    effect: float,
    sd_diff: float,
    n_folds: int,
    n_repeats: int,
    *,
    alpha: float = 0.05,
    test_train_ratio: float | None = None,
) -> float:
    """Power of the two-sided corrected t-test to detect a true mean difference ``effect``."""
    J = n_folds * n_repeats
    ratio = 1 / (n_folds - 1) if test_train_ratio is None else test_train_ratio
    noncentrality = effect / (sd_diff * np.sqrt(1 / J + ratio))
    return two_sided_t_power(noncentrality, J - 1, alpha)


def minimal_detectable_effect(
    n_folds: int,
    n_repeats: int,
    sd_diff: float | None = None,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    test_train_ratio: float | None = None,
) -> DetectableEffect:
    """The smallest true difference the corrected t-test detects with ``power`` at ``alpha``.

    Without ``sd_diff`` (the standard deviation of the per-fold differences) the effect is in
    units of it: about 2.52 for 1x5, 1.70 for 3x5 and 0.98 for 10x10.
    """
    if n_folds < 2 or n_repeats < 1 or n_folds * n_repeats < 2:
        raise ValueError(f"need at least 2 folds and 2 scores, got {n_folds} folds x {n_repeats} repeats")
    ratio = 1 / (n_folds - 1) if test_train_ratio is None else test_train_ratio
    J = n_folds * n_repeats

    def shortfall(x):
        return corrected_ttest_power(x, 1.0, n_folds, n_repeats, alpha=alpha, test_train_ratio=ratio) - power

    upper = 1.0
    while shortfall(upper) < 0:
        upper *= 2
    units = optimize.brentq(shortfall, 1e-9, upper)
    effect = units if sd_diff is None else units * sd_diff
    return DetectableEffect(
        float(effect), float(units), 1 / (1 / J + ratio), n_folds, n_repeats, power, alpha
    )


def design_needed(
    effect: float,
    sd_diff: float,
    *,
    folds=(5, 10),
    max_repeats: int = 100,
    alpha: float = 0.05,
    power: float = 0.8,
) -> list[DesignOption]:
    """For each fold count, the fewest repeats whose corrected t-test detects ``effect`` (None if
    even ``max_repeats`` cannot: the detectable effect never falls below ``limit``)."""
    if effect <= 0 or sd_diff <= 0:
        raise ValueError("effect and sd_diff must be positive")
    options = []
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    for k in folds:
        limit = float(z * sd_diff * np.sqrt(1 / (k - 1)))
        needed = next(
            (
                r
                for r in range(1, max_repeats + 1)
                if k * r >= 2 and corrected_ttest_power(effect, sd_diff, k, r, alpha=alpha) >= power
            ),
            None,
        )
        options.append(DesignOption(k, needed, limit))
    return options


def mcnemar_detectable_difference(
    n: int, discordant_rate: float, *, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest accuracy difference McNemar's test detects on ``n`` paired samples when the two
    models disagree on a share ``discordant_rate`` of them (Connor 1987)."""
    if not 0 < discordant_rate <= 1 or n < 1:
        raise ValueError("need n >= 1 and a discordant rate in (0, 1]")
    z_a, z_b = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    psi = discordant_rate

    def needed(delta):
        return (z_a * np.sqrt(psi) + z_b * np.sqrt(psi - delta**2)) ** 2 / delta**2 - n

    high = np.sqrt(psi) * (1 - 1e-12)
    if needed(high) > 0:
        return float(high)  # no difference is detectable with so few samples
    return float(optimize.brentq(needed, 1e-9, high))
