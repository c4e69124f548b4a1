"""The seed-noise (A/A) check: does one model's score differ between two halves of its seeds?

Both halves are trained on the same splits, so per split their difference is seed noise alone:
independent across splits and centred on zero. The right test is the plain one-sample t on the J
per-split differences (df J - 1). The overlap correction of the corrected resampled t is for
training sets shared between splits; applied here it inflates the standard error (about 2.2x at
5x3) and leaves a check that cannot fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from ._power import two_sided_t_power


@dataclass(frozen=True)
class SeedNoiseCheck:
    estimate: float  # mean over splits of (even-numbered seeds - odd-numbered seeds)
    se: float
    df: int
    t: float
    p: float
    ci_low: float
    ci_high: float
    alpha: float
    seed_sd: float  # sd of one job's score around its split's mean (pooled over splits)
    power_one_sd: float  # power of this check against an offset of one seed_sd between the halves
    n_splits: int
    seeds_per_half: tuple[float, float]  # (even, odd), mean over splits

    @property
    def differs(self) -> bool:
        """The model differs from itself at ``alpha``: under exchangeable seeds, at rate alpha."""
        return self.p < self.alpha


def seed_noise_check(repeat, fold, seed, scores, *, alpha: float = 0.05) -> SeedNoiseCheck:
    """A/A check of one model's per-job ``scores`` (job i = repeat[i], fold[i], seed[i]): its
    even-numbered seeds against its odd-numbered ones, split by split, in pairs (0, 1), (2, 3), ...;
    with an odd number of seeds the last is left out, so that both halves are equally large and the
    per-split difference is symmetric about zero under the null (unequal halves give a skewed
    difference when seed noise is skewed, and a liberal t). Needs >= 2 seeds in at least 2 splits.
    """
    repeat, fold, seed = (np.asarray(v, dtype=np.int64).ravel() for v in (repeat, fold, seed))
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if not len(repeat) == len(fold) == len(seed) == len(scores):
        raise ValueError("repeat, fold, seed and scores must have one length")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    keys = repeat * 1_000_003 + fold
    diffs, residuals, halves = [], [], []
    for key in np.unique(keys):
        in_split = keys == key
        paired = np.sort(seed[in_split])[: 2 * (in_split.sum() // 2)]
        used = in_split & np.isin(seed, paired)
        even = scores[used & (seed % 2 == 0)]
        odd = scores[used & (seed % 2 == 1)]
        if len(even) and len(even) == len(odd):
            diffs.append(even.mean() - odd.mean())
            halves.append((len(even), len(odd)))
            residuals.append(scores[in_split] - scores[in_split].mean())
    if len(diffs) < 2:
        raise ValueError("the seed-noise check needs at least 2 splits with 2 or more seeds each")
    d = np.asarray(diffs)
    J = len(d)
    df = J - 1
    residual = np.concatenate(residuals)
    seed_sd = float(np.sqrt(residual @ residual / (len(residual) - J)))
    se = float(d.std(ddof=1) / np.sqrt(J))
    mean = float(d.mean())
    if se == 0:
        t, p = (0.0, 1.0) if mean == 0 else (float(np.sign(mean) * np.inf), 0.0)
    else:
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(1 - alpha / 2, df) * se)
    per_half = np.mean(halves, axis=0)
    # var(d_j) = seed_sd^2 (1/h_even + 1/h_odd): the power is a property of the design alone.
    noncentrality = np.sqrt(J / np.mean([1 / e + 1 / o for e, o in halves]))
    power = two_sided_t_power(noncentrality, df, alpha)
    return SeedNoiseCheck(
        mean, se, df, float(t), p, mean - half, mean + half, alpha, seed_sd, power, J,
        (float(per_half[0]), float(per_half[1])),
    )  # fmt: skip
