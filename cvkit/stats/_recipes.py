"""Across a grid of training recipes: the grid-average difference and whether the difference
depends on the recipe (recipe x model interaction).

Every cell of the grid trains every model on the same splits with the same seeds, so a job
(repeat, fold, seed) has one paired difference per cell. The grid average per job is an ordinary
paired job score, tested like any run (the splits' correlation across cells is inside each job's
average). Heterogeneity asks whether a cell's difference departs from the grid average: per cell,
the per-job deviation ``d_cell - d_average`` is tested by the corrected resampled t (the deviations
keep the split structure, so the overlap correction applies to them as to any per-job
difference), and the smallest of the C p-values is Bonferroni-adjusted (a max-|deviation| test).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._verdict import FALLBACK_METHOD, PairedJobScores, difference_test


@dataclass(frozen=True)
class RecipeHeterogeneity:
    """Whether the paired difference differs between recipe cells.

    ``deviations`` are each cell's mean difference minus the grid mean, ``pvalues`` their corrected
    t p-values, ``pvalue`` the smallest times the number of cells (at most 1).
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
        The averaged scores, without test-sample variances (its test is the corrected t).

    Raises
    ------
    ValueError
        Fewer than two cells, or cells that do not hold the same jobs.
    """
    orders = _aligned(cells)
    first = cells[0]
    o = orders[0]
    return PairedJobScores(
        repeat=first.repeat[o],
        fold=first.fold[o],
        seed=first.seed[o],
        baseline=np.mean([c.baseline[order] for c, order in zip(cells, orders)], axis=0),
        variant=np.mean([c.variant[order] for c, order in zip(cells, orders)], axis=0),
        n_train=float(np.mean([c.n_train for c in cells])),
        n_test=float(np.mean([c.n_test for c in cells])),
    )


def recipe_heterogeneity(cells: list[PairedJobScores]) -> RecipeHeterogeneity:
    """Test whether the paired difference (variant - baseline) depends on the recipe cell.

    Parameters
    ----------
    cells : list of PairedJobScores
        One per recipe cell, on the same splits and seeds.

    Returns
    -------
    RecipeHeterogeneity
        Per-cell deviations from the grid mean with their p-values, the Bonferroni-adjusted
        smallest p-value and the recipe x model variance component.

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
    pvalue = min(1.0, n_cells * min(pvalues))
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
    )
