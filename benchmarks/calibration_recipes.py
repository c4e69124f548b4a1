"""Calibration of the across-recipe analysis (``--vary``) with real learners: how often cvkit's own
analysis (``cvkit.multiverse.analyse_cells``) claims "better", "holds in every recipe" or "depends
on the recipe" when the variant's advantage exists nowhere or in one recipe cell only.

Data sets are drawn as in ``calibration.py`` (its ``draw``, features and SGD learner), split by
``cvkit.splits.make_plan`` and trained with cvkit's job seeds. The recipe grid is 2 x 2 cells of a
real training change: SGD logistic regression's learning rate {0.02, 0.5} x epochs {1, 30} (from a
short underfit run to converged, and two unstable ones: the cells differ in noise, not only in
mean). Every model runs in every cell on the same splits with the same seeds. Per data set:

- (a) advantage nowhere: the variant is the A = B twin (an exchangeable feature) in every cell;
- (b) advantage in one cell only: the variant sees the informative extra feature in the
  ``lr=0.02,epochs=30`` cell and is the twin in the other three.

Counted per case: a "better" claim in any cell where the variant has no advantage (Holm across the
cells), "better" in the advantaged cell (power), the grid average "better", "holds in every recipe"
(robust), the recipe x model test (Hotelling, and the max-deviation test it replaced) and the
"depends on the recipe" answer. Under (a) every claim is false; under (b) robust and "better" in
the twin cells are false, the rest is power.

    python benchmarks/calibration_recipes.py --out recipes.md              # 400 data sets, ~10 min
    python benchmarks/calibration.py --out table.md --recipes 400    # appended to the main table

One process: data sets are trained one after another.

Measured (400 data sets, 5 x 3 x 3 seeds, 7-13 min on one shared core; margin +/-2.1 points at
5%): advantage nowhere: 'better' in some cell 1.2%, grid average 'better' 2.8%, 'holds in every
recipe' 0.8% (the data set's luck is shared by the cells: when one cell is falsely better, most
are), recipe x model test 0.0% (old 0.0%), 'depends' 0.0%, 'worse' anywhere 4.2%; the grid average's
two-sided rejection rate is 7.0%, at the edge of the margin (12.0% before its test-sample variance
was bounded, see ``cvkit.stats.grid_average``). Advantage in
one cell only (about +0.024 AUC there): 'better' in a twin cell 2.0%, in the advantaged cell
20.8%, 'holds in every recipe' 1.0%, recipe x model test 28.5% (old 28.0%), 'depends' 28.5%.
The recipe x model test is conservative here: the overlap correction also scales the seed noise,
which is independent across splits.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import calibration as base  # noqa: E402  (the sibling bench: its population and learners)

from cvkit.multiverse import analyse_cells, recipe_cells  # noqa: E402
from cvkit.runner import job_seed  # noqa: E402
from cvkit.splits import make_plan  # noqa: E402
from cvkit.stats import PairedJobScores, default_rope, delong  # noqa: E402

ALPHA = base.ALPHA
GRID = {"lr": [0.02, 0.5], "epochs": [1, 30]}
CELLS = recipe_cells(GRID)
ADVANTAGED = {"lr": 0.02, "epochs": 30}  # the one cell where case (b)'s variant is better
CASES = ("advantage nowhere", "advantage in one cell only")


@dataclass(frozen=True)
class RecipeConfig:
    n_datasets: int = 400
    n_samples: int = 428
    n_folds: int = 5
    n_repeats: int = 3
    n_seeds: int = 3  # as calibration.py: seed noise is part of what the tests must carry
    master_seed: int = 2027


REDUCED = RecipeConfig(n_datasets=12, n_repeats=2, n_seeds=1)


def run_dataset(config: RecipeConfig, index: int) -> dict:
    """One data set through the grid: per cell, per job, the AUCs of the baseline, the twin and
    (advantaged cell only) the better variant, and DeLong's variances of both differences."""
    rng = np.random.default_rng([config.master_seed, config.n_samples, index])
    x, y = base.draw(rng, config.n_samples)
    plan = make_plan(y, config.n_folds, config.n_repeats, seed=index)
    cells = []
    for cell in CELLS:
        make = base._sgd(cell["epochs"], cell["lr"])
        better_here = cell == ADVANTAGED
        rows = []
        for split in plan:
            train = np.concatenate([split.train, split.val])
            test = split.test
            positive = y[test] == 1
            for seed in range(config.n_seeds):
                # The same seed in every cell and for every model: the paired design across cells.
                seed_value = job_seed(index, split.repeat, split.fold, seed)
                fit = base._fit_scores
                baseline = fit(make, seed_value, base.BASELINE_FEATURES, x[train], y[train], x[test])
                twin = fit(make, seed_value, base.NULL_FEATURES, x[train], y[train], x[test])
                null = delong(positive, baseline, twin)
                row = [split.repeat, split.fold, seed, null.auc_a, null.auc_b, null.se**2, np.nan, np.nan]
                if better_here:
                    better = fit(make, seed_value, base.BETTER_FEATURES, x[train], y[train], x[test])
                    power = delong(positive, baseline, better)
                    row[6:] = [power.auc_b, power.se**2]
                rows.append(row)
        cells.append(np.array(rows))
    n_train = float(np.mean([len(s.train) + len(s.val) for s in plan]))
    n_test = float(np.mean([len(s.test) for s in plan]))
    positives = float(np.mean([np.sum(y[s.test] == 1) for s in plan]))
    return dict(cells=cells, n_train=n_train, n_test=n_test, positives=positives)


def _paired(rows, variant_column, variance_column, n_train, n_test) -> PairedJobScores:
    return PairedJobScores(
        rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], rows[:, variant_column],
        n_train=n_train, n_test=n_test, diff_variance=rows[:, variance_column],
    )  # fmt: skip


def case_jobs(result: dict, case: str) -> list[PairedJobScores]:
    """Per cell, the variant's paired job scores against the baseline in ``case``."""
    out = []
    for cell, rows in zip(CELLS, result["cells"]):
        better = case == CASES[1] and cell == ADVANTAGED
        columns = (6, 7) if better else (4, 5)
        out.append(_paired(rows, *columns, result["n_train"], result["n_test"]))
    return out


def claims(result: dict, case: str) -> dict:
    """cvkit's across-recipe analysis of one data set in ``case``: which claims it makes."""
    rope = default_rope("auc", result["n_test"], result["positives"])
    report = analyse_cells(
        CELLS, {"variant": case_jobs(result, case)}, vary=GRID, baseline="baseline", alpha=ALPHA, rope=rope
    )
    (variant,) = report.variants
    better = [c.verdict.verdict == "better" for c in variant.cells]
    advantaged = CELLS.index(ADVANTAGED)
    h = variant.heterogeneity
    return dict(
        # "better" in a cell where the variant is the twin (every cell under (a)): a false claim
        false_cell_better=any(b for i, b in enumerate(better) if case == CASES[0] or i != advantaged),
        advantaged_cell_better=better[advantaged],
        overall_better=variant.overall.verdict == "better",
        # the other direction, false in both cases: with "better", the two-sided error rate
        worse=variant.overall.verdict.startswith("worse")
        or any(c.verdict.verdict.startswith("worse") for c in variant.cells),
        robust=variant.robust,
        heterogeneity=h.pvalue < ALPHA,
        heterogeneity_old=min(1.0, len(CELLS) * min(h.pvalues)) < ALPHA,
        depends=variant.recipe_dependent,
        method=h.method,
    )


def run(config: RecipeConfig, progress=None, results=None) -> dict:
    """Train (or take ``results``, the per-data-set scores of an earlier run) and analyse
    ``config.n_datasets`` data sets; per case, the claims of each."""
    started = time.perf_counter()
    tallies = {case: [] for case in CASES}
    trained = []
    for index in range(config.n_datasets):
        result = run_dataset(config, index) if results is None else results[index]
        trained.append(result)
        for case in CASES:
            tallies[case].append(claims(result, case))
        if progress is not None and (index + 1) % 20 == 0:
            progress(f"{index + 1} data sets after {time.perf_counter() - started:.0f} s")
    return dict(tallies=tallies, seconds=time.perf_counter() - started, config=config, results=trained)


def margin(rate: float, n: int) -> float:
    """Binomial 95% half-width of a rate over n data sets."""
    return float(1.96 * np.sqrt(rate * (1 - rate) / n))


def rate(tally: list[dict], key: str) -> float:
    return float(np.mean([t[key] for t in tally]))


def section(summary: dict) -> str:
    """The Markdown section: claim rates per case, with the binomial margin at the nominal rate."""
    config = summary["config"]
    n = config.n_datasets
    methods = sorted({t["method"] for tally in summary["tallies"].values() for t in tally})
    lines = [
        "",
        "## Across-recipe analysis (--vary) with real learners",
        "",
        f"{n} data sets of n = {config.n_samples} per case (the same data sets in both), "
        f"{config.n_folds} folds x {config.n_repeats} repeats x {config.n_seeds} seed(s) per split, AUC, "
        f"alpha {ALPHA}. Recipe grid: SGD logistic regression, learning rate {{0.02, 0.5}} x epochs "
        "{1, 30}; every model in every cell on the same splits and seeds. (a) the variant is the A = B "
        "twin in every cell; (b) it sees the extra informative feature in the lr=0.02, epochs=30 cell "
        f"only. Binomial margin at the 5% nominal rate: +/-{100 * margin(ALPHA, n):.1f} points. "
        f"Recipe x model test: {', '.join(methods)} (Hotelling's overlap-corrected T^2 on the 3 "
        "contrasts; old: max-deviation, the smallest per-cell p-value times 4). "
        f"Wall time {summary['seconds'] / 60:.1f} min.",
        "",
        "| case | 'better' in a cell without advantage (Holm) | 'better' in the advantaged cell "
        "| grid average 'better' | 'holds in every recipe' | recipe x model p < 0.05 (new / old) "
        "| 'depends on the recipe' | 'worse' in a cell or on average |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case, tally in summary["tallies"].items():
        advantaged = "n/a" if case == CASES[0] else base._pct(rate(tally, "advantaged_cell_better"))
        lines.append(
            f"| {case} | {base._pct(rate(tally, 'false_cell_better'))} | {advantaged} | "
            f"{base._pct(rate(tally, 'overall_better'))} | {base._pct(rate(tally, 'robust'))} | "
            f"{base._pct(rate(tally, 'heterogeneity'))} / {base._pct(rate(tally, 'heterogeneity_old'))} | "
            f"{base._pct(rate(tally, 'depends'))} | {base._pct(rate(tally, 'worse'))} |"
        )
    lines += [
        "",
        "False claims (nominal at most 5% + margin): every column under (a); 'better' in a cell without "
        "advantage, 'holds in every recipe' and 'worse' under (b). A one-sided claim ('better' alone) "
        "of a calibrated two-sided test is made at about half the nominal rate; 'better' plus 'worse' "
        "is the two-sided rate. Under (b) the grid average is better by a quarter of the one cell's "
        "advantage, so its 'better' is true, and the recipe x model test and 'depends on the recipe' "
        "give their power.",
    ]
    return "\n".join(lines) + "\n"


def append_section(path, n_datasets: int, *, n_samples: int = 428, progress=print) -> dict:
    """Run the check on ``n_datasets`` data sets and append its section to the Markdown at ``path``
    (the hook of ``calibration.py --recipes``)."""
    summary = run(RecipeConfig(n_datasets=n_datasets, n_samples=n_samples), progress=progress)
    with open(path, "a", encoding="utf-8") as f:
        f.write(section(summary))
    return summary


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="Markdown file for the section")
    parser.add_argument("--datasets", type=int, help="data sets (default 400; --reduced: 12)")
    parser.add_argument("--reduced", action="store_true", help="12 data sets of 5 folds x 2 repeats x 1 seed")
    parser.add_argument("--raw", help="pickle of the per-job scores (to re-analyse without training)")
    parser.add_argument("--from-raw", help="analyse a --raw pickle instead of training")
    args = parser.parse_args(argv)
    config = REDUCED if args.reduced else RecipeConfig()
    if args.datasets:
        config = RecipeConfig(**{**config.__dict__, "n_datasets": args.datasets})
    results = None
    if args.from_raw:
        with open(args.from_raw, "rb") as f:
            raw = pickle.load(f)
        config, results = raw["config"], raw["results"]
        config = RecipeConfig(**config) if isinstance(config, dict) else config
    summary = run(config, progress=lambda text: print(text, flush=True), results=results)
    if args.from_raw:
        summary["seconds"] = raw["seconds"]  # the training's wall time, not the re-analysis's
    if args.raw:
        with open(args.raw, "wb") as f:
            # the config as a dict: the class lives in __main__ when this file runs as a script
            raw = dict(config=config.__dict__, results=summary["results"], seconds=summary["seconds"])
            pickle.dump(raw, f)
    text = section(summary)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    return summary


if __name__ == "__main__":
    main()
    sys.exit(0)
