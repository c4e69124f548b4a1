"""Across a grid of training recipes: the grid-average difference and whether the difference
depends on the recipe (recipe x model interaction).

Every cell of the grid trains every model on the same splits with the same seeds, so a job
(repeat, fold, seed) has one paired difference per cell. The grid average per job is an ordinary
paired job score, tested like any run (the splits' correlation across cells is inside each job's
average), with the cells' test-sample variances bounded as if perfectly correlated.

Heterogeneity asks whether the C cells' expected differences are all equal (H0: no recipe x model
interaction). Per split (seeds averaged), the C cells' differences are projected on C - 1
orthonormal contrasts, which removes everything the cells share (the split, its test samples, the
seed). The mean contrast vector is tested against 0 by Hotelling's T^2 with the Nadeau-Bengio
overlap correction applied to the covariance matrix, ``(1/J + n_test/n_train) S`` (S the sample
covariance of the J per-split contrast vectors): ``F = (J - p) / (p (J - 1)) T^2`` on (p, J - p)
degrees of freedom, p = C - 1. With one contrast (two cells) this is the corrected resampled t on
the difference between the cells' differences, squared. It is exact when each split's noise is
normal and the data-set-level part of the cells' covariance is ``n_test/n_train`` times the
split-to-split part (the corrected t's own model), whatever the cells' variances and correlations:
a recipe whose training is noisier is weighted down instead of drowning the others.

Hotelling's test spends J - p degrees of freedom on the covariance; when they are fewer than p
(many cells, few splits) it falls back to the max-deviation test (each cell's per-split deviation
from the grid average by the corrected t, the smallest p-value times C). The per-cell deviation
p-values are reported either way, to show which cell departs.

Calibration and power against the max-deviation test (``benchmarks/recipe_grid.py``, 2,000
synthetic grids per row, 5 folds x 3 repeats): false-positive rate 0.3-5.3% for 4 and 2 cells
under every noise structure there (margin +/-1.2 points); power +13 points when the cells' noise
differs, +12 to +14 with two cells (where the old test doubled one p-value: FPR 2.8%), +1.5 to +2.5
for an advantage growing across the cells, and 3 to 4.5 points less when one cell departs and
every cell is equally noisy (the max-deviation test's own case).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from ._verdict import FALLBACK_METHOD, DifferenceSummaries, PairedJobScores, difference_test


@dataclass(frozen=True)
class RecipeHeterogeneity:
    """Whether the paired difference differs between recipe cells.

    ``pvalue`` is the joint test of "every cell has the same expected difference": ``method``
    ``"hotelling"`` (Hotelling's T^2 on the C - 1 contrasts with the overlap-corrected covariance;
    ``statistic`` its F on ``df`` = (p, J - p)) or, when the splits are too few for it,
    ``"max_deviation"`` (the smallest per-cell p-value times C; ``statistic`` that t, ``df`` (J - 1,)).
    ``deviations`` are each cell's mean difference minus the grid mean and ``pvalues`` their own
    corrected t p-values (unadjusted: which cell departs, not a test of the grid).
    ``interaction_variance`` is the recipe x model variance component: the between-cell variance
    of the mean difference beyond what its split and seed noise explain (method of moments,
    truncated at 0; the noise is the corrected t's, so it errs low when jobs are less correlated
    than the overlap correction assumes). The rest of the variance
    of one job's difference splits, as in a two-way table cells x jobs (method of moments), into
    ``split_variance`` (a job's difference shared by every cell: its split and seed) and
    ``residual_variance`` (what each cell's training adds to it).
    """

    deviations: tuple[float, ...]
    pvalues: tuple[float, ...]
    pvalue: float
    interaction_variance: float
    noise_variance: float
    split_variance: float = 0.0
    residual_variance: float = 0.0
    method: str = "hotelling"
    statistic: float = float("nan")
    df: tuple[float, ...] = ()


def _aligned(cells: list[PairedJobScores]) -> list[np.ndarray]:
    """Each cell's job order sorted by (repeat, fold, seed); the cells must hold the same jobs."""
    if len(cells) < 2:
        raise ValueError(f"a recipe grid needs at least 2 cells, got {len(cells)}")
    orders, keys = [], None
    for jobs in cells:
        order = np.lexsort((jobs.seed, jobs.fold, jobs.repeat))
        these = np.stack([jobs.repeat[order], jobs.fold[order], jobs.seed[order]])
        if keys is None:
            keys = these
        elif these.shape != keys.shape or not (these == keys).all():
            raise ValueError("the recipe cells do not hold the same (repeat, fold, seed) jobs")
        orders.append(order)
    return orders


def grid_average(cells: list[PairedJobScores]) -> PairedJobScores:
    """Per job (repeat, fold, seed), the baseline's and the variant's scores averaged over the
    recipe cells: the grid average as one paired run, for ``difference_test``.

    Parameters
    ----------
    cells : list of PairedJobScores
        One per recipe cell, on the same splits and seeds.

    Returns
    -------
    PairedJobScores
        The averaged scores. When every cell has per-job test-sample variances, the average's is
        their upper bound ``(mean over cells of sd)^2`` (the cells' test-sample errors perfectly
        correlated), so the grid average is tested like a cell, by the verdict's default method;
        otherwise none (its test is the corrected t).

    Raises
    ------
    ValueError
        Fewer than two cells, or cells that do not hold the same jobs.
    """
    orders = _aligned(cells)
    first = cells[0]
    o = orders[0]
    # The corrected t on the averaged scores is liberal: averaging over cells shrinks the
    # split-to-split noise the overlap correction scales but not the data set's luck every cell
    # shares (calibration_recipes.py, A = B in every cell: 12.0% of 400 data sets rejected). The
    # test-sample variance of a mean of C differences on one test fold is at most the square of
    # their mean sd (Cauchy-Schwarz): with it the default method applies (7.0% there).
    variance = None
    variances = [c.diff_variance for c in cells]
    if all(v is not None for v in variances):
        sds = [np.sqrt(v[order]) for v, order in zip(variances, orders) if v is not None]
        variance = np.mean(sds, axis=0) ** 2
    return PairedJobScores(
        repeat=first.repeat[o],
        fold=first.fold[o],
        seed=first.seed[o],
        baseline=np.mean([c.baseline[order] for c, order in zip(cells, orders)], axis=0),
        variant=np.mean([c.variant[order] for c, order in zip(cells, orders)], axis=0),
        n_train=float(np.mean([c.n_train for c in cells])),
        n_test=float(np.mean([c.n_test for c in cells])),
        diff_variance=variance,
    )


def _contrasts(n_cells: int) -> np.ndarray:
    """(C - 1) x C orthonormal contrasts: rows orthogonal to the all-ones vector and to each other."""
    basis = np.linalg.qr(np.vstack([np.ones(n_cells), np.eye(n_cells)[: n_cells - 1]]).T)[0]
    return basis[:, 1:].T


def hotelling_contrasts(split_diffs: np.ndarray, ratio: float) -> tuple[float, float, tuple[float, float]]:
    """Hotelling's T^2 test that the cells' expected differences are equal, overlap-corrected.

    Parameters
    ----------
    split_diffs : ndarray of shape (C, J)
        Per cell, its per-split paired differences (seeds averaged), the splits in one order.
    ratio : float
        ``n_test / n_train`` of a fold (the Nadeau-Bengio correction).

    Returns
    -------
    pvalue : float
        P(F(p, J - p) >= F), p the rank of the contrasts' covariance (C - 1 unless cells move in
        lockstep).
    statistic : float
        ``F = (J - p) / (p (J - 1)) T^2``, ``T^2 = m' [(1/J + ratio) S]^-1 m``, m and S the mean
        and sample covariance of the J contrast vectors.
    df : tuple of float
        (p, J - p).

    Raises
    ------
    ValueError
        Fewer than C splits (the covariance cannot be estimated with J - p >= 1).
    """
    n_cells, n_splits = split_diffs.shape
    if n_splits < n_cells:
        raise ValueError(
            f"Hotelling's test of {n_cells} cells needs at least {n_cells} splits, got {n_splits}"
        )
    y = _contrasts(n_cells) @ split_diffs  # (C - 1) x J; what every cell shares cancels here
    mean = y.mean(axis=1)
    covariance = (1 / n_splits + ratio) * np.atleast_2d(np.cov(y))
    values, vectors = np.linalg.eigh(covariance)
    # Directions in which the cells move in lockstep (no variance, e.g. identical cells) carry no
    # noise: a mean there is exactly known. Zero mean there: drop them; a nonzero mean: certain.
    # Rounding leaves about 1e-16 of the scores' scale: below 1e-9 of it counts as zero.
    tiny = 1e-9 * float(np.abs(split_diffs).max())
    keep = values > max(1e-12 * float(values.max()), tiny**2)
    projected = vectors.T @ mean
    if np.any(np.abs(projected[~keep]) > tiny):
        return 0.0, float("inf"), (float((~keep).sum()), float(n_splits - 1))
    p = int(keep.sum())
    if p == 0:
        return 1.0, 0.0, (0.0, float(n_splits - 1))
    t2 = float(np.sum(projected[keep] ** 2 / values[keep]))
    f = (n_splits - p) / (p * (n_splits - 1)) * t2
    return float(stats.f.sf(f, p, n_splits - p)), float(f), (float(p), float(n_splits - p))


def recipe_heterogeneity(cells: list[PairedJobScores]) -> RecipeHeterogeneity:
    """Test whether the paired difference (variant - baseline) depends on the recipe cell.

    Parameters
    ----------
    cells : list of PairedJobScores
        One per recipe cell, on the same splits and seeds.

    Returns
    -------
    RecipeHeterogeneity
        The joint test's p-value (Hotelling's overlap-corrected T^2 on the C - 1 contrasts, or the
        max-deviation test when the splits are fewer than 2 (C - 1)), per-cell deviations from the
        grid mean with their own p-values, and the variance decomposition.

    Raises
    ------
    ValueError
        Fewer than two cells, or cells that do not hold the same jobs.
    """
    orders = _aligned(cells)
    diffs = np.stack([c.diffs[order] for c, order in zip(cells, orders)])  # cell x job
    mean = diffs.mean(axis=0)
    first, o = cells[0], orders[0]
    deviations, pvalues, deviation_se = [], [], []
    for row in diffs:
        deviation = PairedJobScores(
            repeat=first.repeat[o],
            fold=first.fold[o],
            seed=first.seed[o],
            baseline=mean,
            variant=row,
            n_train=first.n_train,
            n_test=first.n_test,
        )
        test = difference_test(deviation, FALLBACK_METHOD)
        deviations.append(test.estimate)
        pvalues.append(test.p)
        deviation_se.append(test.se)
    n_cells = len(cells)
    split_diffs = np.stack([DifferenceSummaries(c).split_means for c in cells])  # same split order
    n_splits = split_diffs.shape[1]
    # Hotelling estimates a (C-1) x (C-1) covariance from J splits. With equal noise in every cell
    # and one cell departing, its power falls below the max-deviation test's as p / (J - p) grows
    # (recipe_grid.py: 3-4.5 points at 4 cells x 15 splits; about 14 at 9 cells x 15 splits in a
    # 1,000-grid trial), so below J - p = p the max-deviation test decides.
    df: tuple[float, ...]
    if n_splits - (n_cells - 1) >= n_cells - 1:
        pvalue, statistic, df = hotelling_contrasts(split_diffs, first.n_test / first.n_train)
        method = "hotelling"
    else:
        pvalue = min(1.0, n_cells * min(pvalues))
        statistic = float(max(abs(d) / s if s > 0 else 0.0 for d, s in zip(deviations, deviation_se)))
        method, df = "max_deviation", (float(n_splits - 1),)
    # Method of moments: the variance over cells of each cell's mean difference is the interaction
    # plus the noise of a cell's own mean. That noise is estimated from the deviations, whose part
    # shared by every cell (same split, same test samples) has cancelled: the corrected t's squared
    # standard error of a deviation estimates (1 - 1/C) of it.
    cell_means = diffs.mean(axis=1)
    noise = float(np.mean(np.square(deviation_se)) * n_cells / (n_cells - 1))
    between = float(np.var(cell_means, ddof=1))
    n_jobs = diffs.shape[1]
    residual = diffs - cell_means[:, None] - mean[None, :] + diffs.mean()
    ms_residual = float((residual**2).sum() / max((n_cells - 1) * (n_jobs - 1), 1))
    ms_jobs = float(n_cells * np.var(mean, ddof=1))
    return RecipeHeterogeneity(
        deviations=tuple(float(d) for d in deviations),
        pvalues=tuple(float(p) for p in pvalues),
        pvalue=float(pvalue),
        interaction_variance=max(0.0, between - noise),
        noise_variance=noise,
        split_variance=max(0.0, (ms_jobs - ms_residual) / n_cells),
        residual_variance=ms_residual,
        method=method,
        statistic=float(statistic),
        df=tuple(df),
    )
