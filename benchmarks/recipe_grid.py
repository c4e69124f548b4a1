"""Calibration of the across-recipe analysis (``--vary``), on synthetic per-job scores with known
truth: how often each claim is made when the variant's advantage exists nowhere, in one cell only,
at one batch size only, or everywhere.

A grid is 2 x 2 cells (batch size x drop_last) of a 5-fold x 3-repeat run. The paired difference
of job j in cell c is effect[c] + noise; the noise has a part shared by every cell (the same split
and test samples) and a part of the cell's own, each with the correlation a cross-validation run
has between its jobs. Two correlation structures:

- ``dataset``: every job of a cell shares a component with variance n_test / n of the job's (the
  data set's draw: the model the corrected resampled t is built on);
- ``repeat``: folds of one repeat share a component (overlapping training sets), repeats are
  independent (the corrected t is conservative here).

``python benchmarks/recipe_grid.py --out recipe_grid.md [--grids 1000]`` writes the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from cvkit.multiverse import analyse_cells, recipe_cells
from cvkit.stats import PairedJobScores

GRID = {"batch_size": [16, 32], "drop_last": [True, False]}
SCENARIOS = {
    "no advantage anywhere": [0.0, 0.0, 0.0, 0.0],
    "advantage in one cell only": [0.03, 0.0, 0.0, 0.0],
    "advantage at batch size 16 only": [0.08, 0.08, 0.0, 0.0],
    "advantage everywhere": [0.05, 0.05, 0.05, 0.05],
}
STRUCTURES = ("dataset", "repeat")


def synthetic_grid(rng, effects, *, structure="dataset", folds=5, repeats=3, noise=0.03, shared=0.5):
    """Per cell, paired job scores whose expected difference is ``effects[cell]`` (see the module
    docstring); ``shared`` is the share of the noise variance common to every cell."""
    jobs = [(r, f) for r in range(repeats) for f in range(folds)]
    n = len(jobs)
    repeat = np.array([j[0] for j in jobs])
    fold = np.array([j[1] for j in jobs])
    rho = 1 / folds  # n_test / n of a k-fold split

    def correlated(size):
        if structure == "dataset":
            return np.sqrt(rho) * rng.normal(0, 1) + np.sqrt(1 - rho) * rng.normal(0, 1, size)
        return np.sqrt(rho) * rng.normal(0, 1, repeats)[repeat] + np.sqrt(1 - rho) * rng.normal(0, 1, size)

    common = correlated(n)
    cells = []
    for effect in effects:
        diff = effect + noise * (np.sqrt(shared) * common + np.sqrt(1 - shared) * correlated(n))
        baseline = 0.8 + rng.normal(0, 0.02, n)
        cells.append(
            PairedJobScores(
                repeat=repeat,
                fold=fold,
                seed=np.zeros(n, dtype=int),
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


def margin(rate: float, n: int) -> float:
    """2.5 binomial standard errors of a rate over n grids."""
    return 2.5 * float(np.sqrt(rate * (1 - rate) / n))


def table(n_grids: int, seed: int = 0) -> str:
    lines = [
        f"Across-recipe claims on {n_grids} synthetic 2 x 2 grids per row (5 folds x 3 repeats, alpha 0.05; "
        f"binomial margin at 5%: +/-{margin(0.05, n_grids):.1%}).",
        "",
        "| scenario | noise structure | a cell 'better' (Holm) | grid average 'better' "
        "| 'holds in every recipe' | recipe x model p < 0.05 | 'depends on the recipe' |",
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
    parser.add_argument("--grids", type=int, default=1000, help="simulated grids per row")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    text = table(args.grids)
    Path(args.out).write_text(text + f"\n({time.perf_counter() - started:.0f} s)\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
