"""Calibration of the across-recipe analysis (``--vary``), on synthetic per-job scores with known
truth: how often each claim is made when the variant's advantage exists nowhere, in one cell only,
at one batch size only, or everywhere.

A grid is 2 x 2 cells (batch size x drop_last) of a 5-fold x 3-repeat run. The paired difference
of job j in cell c is effect[c] + noise; the noise has a part shared by every cell (the same split
and test samples) and a part of the cell's own, each with the correlation a cross-validation run
has between its jobs. Noise structures:

- ``dataset``: every job of a cell shares a component with variance n_test / n of the job's (the
  data set's draw: the model the corrected resampled t is built on);
- ``repeat``: folds of one repeat share a component (overlapping training sets), repeats are
  independent (the corrected t is conservative here);
- ``unequal``: ``dataset`` with the cells' own noise sd 1, 1, 2 and 4 times the first's (recipes
  that train more or less stably);
- ``unstable``: ``dataset`` plus 3 seeds per split with heavy-tailed seed noise (t, 3 df; sd 0.05,
  three times that in the last cell): unstable training.

Two tables: the claims the across-recipe analysis makes (``analyse_cells``), and the recipe x model
test against the max-deviation test it replaced (each cell's deviation from the grid average by
the corrected t, smallest p-value times C), on 2 x 2 grids and on 2-cell grids.

``python benchmarks/recipe_grid.py --out recipe_grid.md [--grids 1000] [--test-grids 2000]``
writes both.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from cvkit.multiverse import analyse_cells, recipe_cells
from cvkit.stats import PairedJobScores, recipe_heterogeneity

GRID = {"batch_size": [16, 32], "drop_last": [True, False]}
SCENARIOS = {
    "no advantage anywhere": [0.0, 0.0, 0.0, 0.0],
    "advantage in one cell only": [0.03, 0.0, 0.0, 0.0],
    "advantage at batch size 16 only": [0.08, 0.08, 0.0, 0.0],
    "advantage everywhere": [0.05, 0.05, 0.05, 0.05],
}
# name -> (correlation between jobs, the cells' noise scales, seeds per split, seed noise sd, its
# t degrees of freedom or None for normal); see the module docstring.
STRUCTURES = {
    "dataset": ("dataset", None, 1, 0.0, None),
    "repeat": ("repeat", None, 1, 0.0, None),
    "unequal": ("dataset", (1, 1, 2, 4), 1, 0.0, None),
    "unstable": ("dataset", (1, 1, 1, 3), 3, 0.05, 3),
}
# The recipe x model test's comparison: no difference, one cell +0.03, an advantage growing across
# the cells; and 2-cell grids (drop_last yes/no), where the max-deviation test doubles one p-value.
HETEROGENEITY = {
    "4 cells, no difference": [0.0, 0.0, 0.0, 0.0],
    "4 cells, one cell +0.03": [0.03, 0.0, 0.0, 0.0],
    "4 cells, growing 0 / +0.01 / +0.02 / +0.03": [0.0, 0.01, 0.02, 0.03],
    "2 cells, no difference": [0.0, 0.0],
    "2 cells, one cell +0.03": [0.03, 0.0],
}


def synthetic_grid(rng, effects, *, structure="dataset", folds=5, repeats=3, noise=0.03, shared=0.5):
    """Per cell, paired job scores whose expected difference is ``effects[cell]`` (see the module
    docstring); ``shared`` is the share of the split-level noise variance common to every cell."""
    correlation, scales, seeds, seed_noise, tails = STRUCTURES[structure]
    scales = np.ones(len(effects)) if scales is None else np.asarray(scales, float)[: len(effects)]
    jobs = [(r, f, s) for r in range(repeats) for f in range(folds) for s in range(seeds)]
    n = len(jobs)
    repeat = np.array([j[0] for j in jobs])
    fold = np.array([j[1] for j in jobs])
    seed = np.array([j[2] for j in jobs])
    split = repeat * folds + fold
    n_splits = folds * repeats
    rho = 1 / folds  # n_test / n of a k-fold split

    def correlated():
        # One value per split, shared by its seeds (the same trained-on data and test samples).
        if correlation == "dataset":
            per_split = np.sqrt(rho) * rng.normal(0, 1) + np.sqrt(1 - rho) * rng.normal(0, 1, n_splits)
        else:
            per_repeat = rng.normal(0, 1, repeats)[np.arange(n_splits) // folds]
            per_split = np.sqrt(rho) * per_repeat + np.sqrt(1 - rho) * rng.normal(0, 1, n_splits)
        return per_split[split]

    def seed_part():
        if not seed_noise:
            return 0.0
        if tails is None:
            return seed_noise * rng.normal(0, 1, n)
        return seed_noise * rng.standard_t(tails, n) / np.sqrt(tails / (tails - 2))  # sd seed_noise

    common = correlated()
    cells = []
    for effect, scale in zip(effects, scales):
        own = noise * np.sqrt(1 - shared) * correlated() + seed_part()
        diff = effect + noise * np.sqrt(shared) * common + scale * own
        baseline = 0.8 + rng.normal(0, 0.02, n)
        cells.append(
            PairedJobScores(
                repeat=repeat,
                fold=fold,
                seed=seed,
                baseline=baseline,
                variant=baseline + diff,
                n_train=120,
                n_test=30,
            )
        )
    return cells


def analyse(cells_jobs, *, alpha=0.05):
    return analyse_cells(
        recipe_cells(GRID), {"variant": cells_jobs}, vary=GRID, baseline="resnet18", alpha=alpha, rope=0.01
    )


def claim_rates(effects, n_grids, seed, *, structure="dataset") -> dict[str, float]:
    """Share of ``n_grids`` simulated grids making each claim."""
    rng = np.random.default_rng(seed)
    counts = dict(cell_better=0, overall_better=0, robust=0, heterogeneous=0, depends=0)
    for _ in range(n_grids):
        (variant,) = analyse(synthetic_grid(rng, effects, structure=structure)).variants
        counts["cell_better"] += any(c.verdict.verdict.startswith("better") for c in variant.cells)
        counts["overall_better"] += variant.overall.verdict.startswith("better")
        counts["robust"] += variant.robust
        counts["heterogeneous"] += variant.heterogeneity.pvalue < 0.05
        counts["depends"] += variant.recipe_dependent
    return {k: v / n_grids for k, v in counts.items()}


def heterogeneity_rates(effects, n_grids, seed, *, structure="dataset", alpha=0.05) -> dict[str, float]:
    """Share of ``n_grids`` simulated grids in which the recipe x model test (``new``: the joint
    test ``recipe_heterogeneity`` runs) and the max-deviation test it replaced (``old``: the
    smallest per-cell deviation p-value times the number of cells) reject at ``alpha``."""
    rng = np.random.default_rng(seed)
    old = new = 0
    for _ in range(n_grids):
        h = recipe_heterogeneity(synthetic_grid(rng, effects, structure=structure))
        old += min(1.0, len(effects) * min(h.pvalues)) < alpha
        new += h.pvalue < alpha
    return dict(old=old / n_grids, new=new / n_grids)


def heterogeneity_table(n_grids: int, seed: int = 100) -> str:
    """Markdown: the recipe x model test's rejection rates, old (max-deviation) vs new."""
    lines = [
        f"Recipe x model test on {n_grids} synthetic grids per row (5 folds x 3 repeats, alpha 0.05; "
        f"binomial margin at 5%: +/-{margin(0.05, n_grids):.1%}). It tests H0: every cell has the same "
        "expected difference (variant - baseline). New: Hotelling's T^2 on the C - 1 contrasts of the "
        "per-split differences, covariance overlap-corrected (1/J + n_test/n_train), F on (C - 1, "
        "J - C + 1) df. Old: each cell's deviation from the grid average by the corrected t, the "
        "smallest p-value times C. Rows without a difference give the false-positive rate, the others "
        "the power.",
        "",
        "| grid | noise structure | old (max-deviation) | new (Hotelling, corrected) |",
        "|---|---|---|---|",
    ]
    for i, (name, effects) in enumerate(HETEROGENEITY.items()):
        for j, structure in enumerate(STRUCTURES):
            r = heterogeneity_rates(effects, n_grids, seed + 10 * i + j, structure=structure)
            lines.append(f"| {name} | {structure} | {r['old']:.1%} | {r['new']:.1%} |")
    return "\n".join(lines) + "\n"


def margin(rate: float, n: int) -> float:
    """2.5 binomial standard errors of a rate over n grids."""
    return 2.5 * float(np.sqrt(rate * (1 - rate) / n))


def table(n_grids: int, seed: int = 0) -> str:
    lines = [
        f"Across-recipe claims on {n_grids} synthetic 2 x 2 grids per row (5 folds x 3 repeats, alpha 0.05; "
        f"binomial margin at 5%: +/-{margin(0.05, n_grids):.1%}).",
        "",
        "| scenario | noise structure | a cell 'better' (Holm) | grid average 'better' "
        "| 'holds in every recipe' | recipe x model p < 0.05 (Hotelling) | 'depends on the recipe' |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, (name, effects) in enumerate(SCENARIOS.items()):
        for j, structure in enumerate(STRUCTURES):
            r = claim_rates(effects, n_grids, seed + 10 * i + j, structure=structure)
            lines.append(
                f"| {name} | {structure} | {r['cell_better']:.1%} | {r['overall_better']:.1%} | "
                f"{r['robust']:.1%} | {r['heterogeneous']:.1%} | {r['depends']:.1%} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="Markdown file for the table")
    parser.add_argument("--grids", type=int, default=1000, help="simulated grids per row of the claims")
    parser.add_argument(
        "--test-grids", type=int, default=2000, help="simulated grids per row of the recipe x model test"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    text = table(args.grids) + "\n" + heterogeneity_table(args.test_grids)
    Path(args.out).write_text(text + f"\n({time.perf_counter() - started:.0f} s)\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
