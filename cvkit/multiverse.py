"""Does the verdict survive the recipe? ``--vary NAME=V1,V2`` runs the comparison in every cell of
a grid of training recipes and asks whether the ranking holds.

Each cell is an ordinary run folder under the grid's folder (``OUT/batch_size=16,drop_last=true``):
the same data, design, splits and seeds, one recipe. Cells resume and reuse jobs like any run (a
job another cell or an earlier grid already trained is reused, not trained again). The analysis
(``analyse_cells``, pure, on per-job paired scores) gives each cell's verdict by the calibrated
verdict test with Holm across cells x variants, the grid-average difference tested the same way,
and a recipe x model heterogeneity test (``stats.recipe_heterogeneity``).
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from . import stats
from .comparison import Registration, paired_job_scores, registration_status
from .errors import ConfigError, OptionError
from .report import registration_record
from .trainers import TrainConfig

# Recipe fields a grid may vary (the device, backbone and weights are not training choices).
VARIABLE = (
    "epochs",
    "batch_size",
    "drop_last",
    "lr",
    "weight_decay",
    "augment",
    "class_weight",
    "select",
    "stem",
    "precision",
)
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def _typed(name: str, value):
    """One value of a varied field as the recipe takes it: text (``--vary``) parsed by the field's
    type; a Python or plan-file value checked against it (an integer learning rate becomes a
    float, so that ``lr=1`` and ``lr=1.0`` are one recipe and one job key)."""
    kind = type(getattr(TrainConfig, name))
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        if kind is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise OptionError("vary", f"{name}={text!r}: use true or false (yes/no)")
        try:
            return kind(text)
        except ValueError:
            raise OptionError("vary", f"{name}={text!r}: not a {kind.__name__}") from None
    if isinstance(value, str):
        return value.strip()
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise OptionError("vary", f"{name}={value!r}: not a {kind.__name__}")
    return value


def parse_vary(specs) -> dict[str, list]:
    """Parse ``NAME=V1,V2[,...]`` specifications into recipe values, typed by the field.

    Parameters
    ----------
    specs : str, iterable of str, or dict of str to list
        One ``NAME=V1,V2`` per varied recipe field (``--vary``), or the dict itself
        (``{"batch_size": [16, 32]}``; its values typed as the field is, or as text).

    Returns
    -------
    dict of str to list
        Per field, its distinct values in the order given, each checked by ``TrainConfig``.

    Raises
    ------
    OptionError
        An unknown field, a malformed specification, a value of the wrong type or out of range, a
        field given twice, or a grid of fewer than two cells (names ``vary``).
    """
    if isinstance(specs, dict):
        pairs = list(specs.items())
        for name, values in pairs:
            if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
                raise OptionError("vary", f"{name}: give a list of values, e.g. {{{name!r}: [A, B]}}")
    elif isinstance(specs, str) or (
        isinstance(specs, (list, tuple)) and all(isinstance(s, str) for s in specs)
    ):
        pairs = [_split_spec(spec) for spec in ([specs] if isinstance(specs, str) else specs)]
    else:
        raise OptionError(
            "vary", f"{specs!r}: give a dict of field -> values or NAME=V1,V2 strings (batch_size=16,32)"
        )
    vary: dict[str, list] = {}
    for name, values in pairs:
        if name not in VARIABLE:
            raise OptionError(
                "vary", f"{name!r} is no recipe option a grid varies; use one of {', '.join(VARIABLE)}"
            )
        if name in vary:
            raise OptionError("vary", f"{name} is given twice; list all its values once ({name}=A,B)")
        typed = list(dict.fromkeys(_typed(name, v) for v in values))
        if not typed:
            raise OptionError("vary", f"{name}: give at least one value")
        for value in typed:
            try:
                TrainConfig(**{name: value})
            except OptionError as error:
                raise OptionError("vary", f"{name}={value!r}: {error.problem}") from None
        vary[name] = typed
    if not vary:
        raise OptionError("vary", "give at least one NAME=V1,V2")
    if math.prod(len(values) for values in vary.values()) < 2:
        raise OptionError(
            "vary", "a grid needs two cells or more: give some field two values (batch_size=16,32)"
        )
    return vary


def _split_spec(spec: str) -> tuple[str, list[str]]:
    name, sep, values = str(spec).partition("=")
    if not sep or not name.strip() or not values.strip():
        raise OptionError("vary", f"{spec!r}: write NAME=V1,V2 (for example batch_size=16,32)")
    return name.strip().replace("-", "_"), [v for v in values.split(",") if v.strip()]


def recipe_cells(vary: dict[str, list]) -> list[dict]:
    """The grid's cells: the cartesian product of the varied values, first field slowest.

    Parameters
    ----------
    vary : dict of str to list
        Per recipe field, its values (``parse_vary``).

    Returns
    -------
    list of dict
        One ``{field: value}`` per cell.
    """
    names = list(vary)
    return [dict(zip(names, values)) for values in itertools.product(*(vary[n] for n in names))]


def _show(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def cell_name(cell: dict) -> str:
    """A cell's folder name and label: ``batch_size=16,drop_last=true``.

    Parameters
    ----------
    cell : dict
        The cell's recipe values.

    Returns
    -------
    str
        ``name=value`` pairs joined by commas.
    """
    return ",".join(f"{k}={_show(v)}" for k, v in cell.items())


def describe_grid(vary: dict[str, list]) -> str:
    """The grid in words: ``batch_size {16, 32} x drop_last {yes, no}``.

    Parameters
    ----------
    vary : dict of str to list
        Per recipe field, its values.

    Returns
    -------
    str
        The fields and their values.
    """

    def word(v):
        return ("yes" if v else "no") if isinstance(v, bool) else _show(v)

    return " x ".join(f"{k} {{{', '.join(word(v) for v in values)}}}" for k, values in vary.items())


@dataclass
class GridResults:
    """The runs of a recipe grid, in grid order.

    Parameters
    ----------
    run_dir : Path
        The grid's folder; each cell's run is a sub-folder named by ``cell_name``.
    vary : dict of str to list
        The grid: per varied recipe field, its values.
    cells : list of (dict, Results)
        Each cell's recipe values and its run (with ``counts``: trained, resumed, reused).
    """

    run_dir: Path
    vary: dict
    cells: list

    @property
    def counts(self) -> dict:
        total = dict(trained=0, resumed=0, reused=0)
        for _, results in self.cells:
            for key in total:
                total[key] += getattr(results.counts, key, 0) if results.counts is not None else 0
        return total


def evaluate_grid(
    variants,
    *,
    vary,
    out,
    evaluate,
    recipe: TrainConfig | None = None,
    registration=None,
    progress=None,
    **kwargs,
) -> GridResults:
    """Run ``evaluate`` in every cell of a recipe grid, each cell an ordinary run folder under
    ``out`` (shared splits and seeds; jobs resume and are reused across cells). ``cvkit.evaluate``
    with ``vary=`` calls this with itself as ``evaluate``.

    Parameters
    ----------
    variants : str, path or list
        The variants, as for ``evaluate``.
    vary : dict or list of str
        The grid: ``{"batch_size": [16, 32]}`` or ``["batch_size=16,32"]``.
    out : str or path
        The grid's folder; each cell's run lies in a sub-folder named by ``cell_name``.
    evaluate : callable
        The function that runs one cell (``cvkit.evaluate``; a stand-in in tests).
    recipe : TrainConfig or None, default=None
        The recipe the grid varies (None: the defaults); keyword shortcuts of its fields apply to
        every cell.
    registration : AnalysisPlan or None, default=None
        The pre-registered plan every cell follows; its ``[design] vary`` must be this grid.
    progress : object or None, default=None
        As for ``evaluate``. A display of your own with an ``epochs`` attribute (``JobProgress``,
        ``NotebookProgress``) is set to each cell's epochs before the cell runs, so that a grid
        that varies the epochs counts each cell's own.
    **kwargs
        Every other argument of ``evaluate`` (data, design, execution, ...).

    Returns
    -------
    GridResults
        Each cell with its ``Results`` (with ``counts``).

    Raises
    ------
    OptionError
        A malformed grid, or a varied field also given as a keyword.
    ConfigError
        A ``registration`` whose grid is not this one.
    """
    vary = parse_vary(vary)
    if registration is not None:
        check_registered_grid(registration.design.get("vary"), vary, where="this grid")
    recipe = recipe or TrainConfig()
    given = {f.name for f in fields(TrainConfig)} & set(kwargs)
    clash = sorted(given & set(vary))
    if clash:
        raise OptionError("vary", f"{', '.join(clash)} is both varied and fixed; drop one")
    recipe = replace(recipe, **{k: kwargs.pop(k) for k in given})
    root = Path(out)
    cells = []
    with _each_warning_shown_once():
        for cell in recipe_cells(vary):
            cell_recipe = replace(recipe, **cell)
            if hasattr(progress, "epochs"):
                progress.epochs = cell_recipe.epochs
            results = evaluate(
                variants,
                recipe=cell_recipe,
                out=root / cell_name(cell),
                registration=registration,
                progress=progress,
                **kwargs,
            )
            cells.append((cell, results))
    return GridResults(root, vary, cells)


@contextmanager
def _each_warning_shown_once():
    """Every cell reads the same data, so its warnings (duplicate images, class balance) repeat
    cell after cell: show each text once. Each cell still records every warning among its run's
    caveats (``record_warnings`` records before it shows)."""
    shown: set[str] = set()
    show = warnings.showwarning

    def once(message, category, filename, lineno, file=None, line=None):
        if str(message) not in shown:
            shown.add(str(message))
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = once
    try:
        yield
    finally:
        warnings.showwarning = show


# Why a recipe grid and a sequential design exclude each other, in every message that says so.
GRID_NOT_SEQUENTIAL_WHY = "cells stopping at different repeats could not be paired job by job"
GRID_NOT_SEQUENTIAL = (
    "a recipe grid (vary) runs a fixed design in every cell; it cannot be sequential "
    f"({GRID_NOT_SEQUENTIAL_WHY})"
)


def not_sequential(flag: str) -> OptionError:
    """The one-line refusal of a recipe grid together with a sequential design (``flag``: how the
    caller spells it, ``--until-decided`` or ``until_decided``)."""
    return OptionError(
        "vary",
        f"runs a fixed design in every cell; it cannot be combined with {flag} ({GRID_NOT_SEQUENTIAL_WHY})",
    )


def check_registered_grid(planned, asked, *, where: str, plan="the pre-registered plan") -> None:
    """Refuse a grid that is not the one a pre-registered plan fixes (the same fields and values,
    in any order), in one line naming both.

    Parameters
    ----------
    planned : dict or None
        The plan's ``[design] vary`` (None: the plan fixes a single recipe).
    asked : dict or None
        The grid asked for (``parse_vary``'s; None: no grid).
    where : str
        What asks for it, for the message (``--vary ...``, ``this grid``).
    plan : str or path, default="the pre-registered plan"
        The plan, for the message (its file on the command line).

    Raises
    ------
    ConfigError
        The two differ.
    """

    def as_sets(grid):
        return {k: set(v) for k, v in (grid or {}).items()}

    if as_sets(planned) == as_sets(asked):
        return
    fixed = f"the grid {describe_grid(planned)}" if planned else "a single recipe (no grid)"
    wanted = f"the grid {describe_grid(asked)}" if asked else "a single recipe"
    raise ConfigError(f"{plan} fixes {fixed}; {where} asks for {wanted}: run the plan as written")


@dataclass(frozen=True)
class CellVerdict:
    """One variant's verdict in one recipe cell (Holm across cells x variants)."""

    cell: dict
    verdict: stats.Verdict


@dataclass(frozen=True)
class AcrossRecipes:
    """One variant across the recipe grid: each cell's verdict, the grid average and whether the
    difference depends on the recipe."""

    variant: str
    baseline: str
    cells: tuple
    overall: stats.Verdict
    heterogeneity: stats.RecipeHeterogeneity | None  # None: one distinct recipe, nothing to compare
    n_better: int
    answer: str
    sentence: str

    @property
    def robust(self) -> bool:
        return self.heterogeneity is not None and self.n_better == len(self.cells)

    @property
    def recipe_dependent(self) -> bool:
        return self.answer.endswith("depends on the recipe")


@dataclass(frozen=True)
class GridReport:
    """The across-recipe analysis of a grid, for every report format. ``cells`` are the distinct
    recipes analysed; ``identical`` the groups of cells that gave identical predictions, each
    counted once as its first cell (which ``cells`` holds); ``registration`` the pre-registered
    plan every cell was run under, with whether this analysis keeps to it."""

    vary: dict
    cells: tuple
    metric: str
    alpha: float
    rope: float
    variants: tuple
    identical: tuple = ()
    registration: Registration | None = None


# What each recipe x model test is, in the words every report uses.
HETEROGENEITY_TESTS = {
    "hotelling": "Hotelling's T\N{SUPERSCRIPT TWO} of the cells' contrasts, overlap-corrected",
    "max_deviation": "max-deviation test: the smallest cell's corrected-t p-value times the cells",
}
ONE_RECIPE = "every cell trained identically: the grid is one recipe, and the verdict is its own"


def _answer(n_better, cell_verdicts, heterogeneity, overall, alpha) -> str:
    """The across-recipe answer. "Depends on the recipe" is a claim of its own, made only on
    evidence for it: a significant recipe x model test, or cells significantly better and others
    significantly worse (Holm-adjusted). Cells that merely differ in being decided do not make it:
    with a real advantage everywhere, some cells miss it by chance."""
    n = len(cell_verdicts)
    if heterogeneity is None:
        return ONE_RECIPE
    if n_better == n:
        return "holds in every recipe"
    worse = sum(v.startswith("worse") for v in cell_verdicts)
    if heterogeneity.pvalue < alpha or (n_better and worse):
        kind = "advantage" if n_better or overall.ttest.mean > 0 else "difference"
        return f"the {kind} depends on the recipe"
    if worse == n:
        return "worse in every recipe"
    if n_better:
        return (
            f"better in {n_better} of {n} recipes, undecided in the others; the recipe x model test "
            "finds no evidence that the recipe matters"
        )
    if overall.verdict == "better":
        return "better on average over the grid, though in no single recipe"
    return f"no recipe shows an advantage (grid average: {overall.verdict})"


def analyse_cells(
    cells: list[dict],
    jobs: dict[str, list],
    *,
    vary: dict,
    baseline: str,
    metric: str = "auc",
    alpha: float = 0.05,
    rope: float = 0.01,
    identical: tuple = (),
    registration: Registration | None = None,
) -> GridReport:
    """The across-recipe analysis from per-cell paired job scores.

    Parameters
    ----------
    cells : list of dict
        The recipe cells, in grid order.
    jobs : dict of str to list of stats.PairedJobScores
        Per variant, its paired scores against the baseline in each cell (same jobs in every cell).
    vary : dict of str to list
        The grid (for the sentence).
    baseline : str
        The baseline's name.
    metric : str, default="auc"
        The metric of the scores.
    alpha : float, default=0.05
        Family-wise error rate: Holm across cells x variants for the per-cell verdicts, Holm
        across variants for the grid averages, and the heterogeneity test's level.
    rope : float, default=0.01
        Region of practical equivalence of the difference.
    identical : tuple of tuple of dict, default=()
        Groups of grid cells that gave identical predictions (``identical_cells``), each already
        counted once in ``cells`` as its first; the sentence then counts distinct recipes.
    registration : Registration or None, default=None
        The pre-registered plan the cells were run under, for the reports.

    Returns
    -------
    GridReport
        Per variant, its cells' verdicts, the grid-average verdict, the heterogeneity test (None
        when a single distinct recipe is left) and the sentence.

    Raises
    ------
    ValueError
        Cells that do not hold the same jobs.
    """
    names = list(jobs)
    family = [cell_jobs for name in names for cell_jobs in jobs[name]]
    decided = stats.verdicts(family, alpha=alpha, rope=rope)
    single = len(cells) == 1  # every cell of the grid trained identically: nothing to average
    averages = [cell_jobs[0] if single else stats.grid_average(cell_jobs) for cell_jobs in jobs.values()]
    overall = stats.verdicts(averages, alpha=alpha, rope=rope)
    label = stats.metric_label(metric)
    grid = describe_grid(vary)
    if identical:
        grid += f" ({len(cells)} distinct recipe{'s' * (len(cells) > 1)})"
    out = []
    for i, name in enumerate(names):
        mine = decided[i * len(cells) : (i + 1) * len(cells)]
        heterogeneity = None if single else stats.recipe_heterogeneity(jobs[name])
        n_better = sum(v.verdict == "better" for v in mine)
        answer = _answer(n_better, [v.verdict for v in mine], heterogeneity, overall[i], alpha)
        t = overall[i].ttest
        delta = f"\N{GREEK CAPITAL LETTER DELTA}{label} {t.mean:+.3f} [{t.low:+.3f}, {t.high:+.3f}]"
        sentence = (
            f"{name} vs {baseline} over {grid}: {delta}, {overall[i].verdict}; {answer}"
            if single
            else f"{name} beats {baseline} in {n_better} of {len(cells)} recipes; averaged over {grid} "
            f"{delta}: {answer}"
        )
        out.append(
            AcrossRecipes(
                name,
                baseline,
                tuple(CellVerdict(cell, v) for cell, v in zip(cells, mine)),
                overall[i],
                heterogeneity,
                n_better,
                answer,
                sentence,
            )
        )
    return GridReport(
        vary, tuple(cells), metric, alpha, rope, tuple(out), tuple(map(tuple, identical)), registration
    )


def analyse_grid(
    grid: GridResults, *, metric: str | None = None, alpha: float | None = None, rope: float | None = None
) -> GridReport:
    """The across-recipe analysis of a grid's runs (``cvkit.evaluate(..., vary=...)``).

    Cells whose predictions are identical for every model and job (``identical_cells``) are one
    recipe in disguise: each such group is analysed as one cell (its first), so that it neither
    counts twice towards "holds in every recipe" and the grid average nor widens the Holm family;
    the reports name the groups.

    Parameters
    ----------
    grid : GridResults
        The grid's runs.
    metric : str or None, default=None
        The verdict metric; None: the pre-registered plan's, else AUC.
    alpha : float or None, default=None
        Family-wise error rate (see ``analyse_cells``); None: the plan's, else 0.05.
    rope : float or None, default=None
        Region of practical equivalence; None: the plan's, else the metric's default for the
        first cell's folds.

    Returns
    -------
    GridReport
        See ``analyse_cells``; with the groups of identical cells and the plan's registration.

    Raises
    ------
    ConfigError
        Cells whose splits differ (they cannot be paired), or another baseline or models in a cell.
    """
    runs = [results for _, results in grid.cells]
    first = runs[0]
    for cell, results in grid.cells[1:]:
        if results.plan != first.plan or results.run["design"]["seeds"] != first.run["design"]["seeds"]:
            raise ConfigError(
                f"{results.run_dir}: its splits or seeds differ from the grid's first cell; "
                "cells must share them"
            )
        if results.model_names != first.model_names:
            raise ConfigError(
                f"{results.run_dir}: its models differ from the grid's first cell ({cell_name(cell)})"
            )
    # Pre-registered only when every cell was run under the same plan.
    registered = first.registration if all(r.registration == first.registration for r in runs) else None
    planned = registered["content"]["analysis"] if registered else {}
    asked = dict(metric=metric, alpha=alpha, rope=rope)
    metric = metric or planned.get("metric", "auc")
    alpha = alpha or planned.get("alpha", 0.05)
    n_train, n_test = first.fold_sizes
    positives = np.mean([np.sum(first.labels[s["test"]] == first.positive) for s in first.plan])
    default_rope = stats.default_rope(metric, n_test, float(positives))
    rope = planned.get("rope", default_rope) if rope is None else rope
    groups = identical_cells(runs)
    merged = {i for group in groups for i in group[1:]}
    kept = [i for i in range(len(runs)) if i not in merged]
    jobs = {
        variant: [paired_job_scores(runs[i], variant, metric=metric) for i in kept]
        for variant in first.variants
    }
    for variant, cell_jobs in jobs.items():
        counts = {len(j.repeat) for j in cell_jobs}
        if len(counts) > 1:
            raise ConfigError(
                f"{variant} finished {min(counts)} to {max(counts)} jobs in the grid's cells: the cells "
                "cannot be paired job by job; run the same command again to finish the failed jobs"
            )
    return analyse_cells(
        [grid.cells[i][0] for i in kept],
        jobs,
        vary=grid.vary,
        baseline=first.baseline,
        metric=metric,
        alpha=alpha,
        rope=rope,
        identical=tuple(tuple(grid.cells[i][0] for i in group) for group in groups),
        registration=registration_status(registered, asked, default_rope, first.baseline),
    )


def identical_cells(runs) -> list[list[int]]:
    """Which cells gave identical predictions for every model and job: the same probabilities of
    every test sample under each job's selected checkpoint (at a batch size every training part
    divides, say, ``drop_last`` changes nothing).

    Parameters
    ----------
    runs : list of Results
        The grid's cells, in grid order, with the same models, splits and seeds.

    Returns
    -------
    list of list of int
        Groups of two or more cell indices, each group in grid order; cells in no group are unique.
    """
    keys = ["model", "repeat", "fold", "seed_index", "seed", "sample_idx"]
    frames = []
    for results in runs:
        frame = results.predictions
        frames.append(frame[[*keys, *(c for c in frame.columns if c.startswith("prob_"))]])
    groups: list[list[int]] = []
    for i, frame in enumerate(frames):
        same = next((g for g in groups if frames[g[0]].equals(frame)), None)
        if same is None:
            groups.append([i])
        else:
            same.append(i)
    return [group for group in groups if len(group) > 1]


def identical_message(group) -> str:
    """The warning for one group of identical cells: the settings that differ, the ones they share.

    Parameters
    ----------
    group : sequence of dict
        The cells' recipe values, in grid order.

    Returns
    -------
    str
        ``cells drop_last=true and drop_last=false (batch_size=16) gave identical predictions ...``.
    """
    differ = [name for name in group[0] if len({cell[name] for cell in group}) > 1]
    shared = {name: value for name, value in group[0].items() if name not in differ}
    shown = [cell_name({name: cell[name] for name in differ}) for cell in group]
    listed = f"{', '.join(shown[:-1])} and {shown[-1]}"
    where = f" ({cell_name(shared)})" if shared else ""
    return (
        f"cells {listed}{where} gave identical predictions for every model and job: one recipe in "
        "disguise; the grid counts them as one"
    )


def _label(cell: dict, identical) -> tuple[str, list[str]]:
    """A kept cell's row label, naming the cells counted with it (by the settings that differ)."""
    group = next((g for g in identical if g[0] == cell), None)
    if group is None:
        return cell_name(cell), []
    differ = [name for name in cell if len({c[name] for c in group}) > 1]
    others = [cell_name({name: c[name] for name in differ}) for c in group[1:]]
    return f"{cell_name(cell)} (= {' = '.join(others)})", [cell_name(c) for c in group[1:]]


def grid_record(report: GridReport) -> dict:
    """The grid analysis as JSON-ready data (cells, per-cell verdicts, grid average, heterogeneity,
    the groups of identical cells and the pre-registered plan).

    Parameters
    ----------
    report : GridReport
        The analysis.

    Returns
    -------
    dict
        Plain values only (NaN as None). Each analysed cell has its ``label`` (its name, with the
        cells counted with it) and ``also`` (their names); ``identical`` holds each group's cells
        and its warning; ``heterogeneity`` is None when one distinct recipe is left.
    """

    def num(x):
        return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)

    def verdict(v: stats.Verdict) -> dict:
        t = v.ttest
        return dict(
            verdict=v.verdict,
            delta=num(t.mean),
            low=num(t.low),
            high=num(t.high),
            confidence=num(v.confidence),
            pvalue=num(t.pvalue),
            pvalue_holm=num(v.pvalue_holm),
            method=t.method,
        )

    def heterogeneity(h: stats.RecipeHeterogeneity | None) -> dict | None:
        if h is None:
            return None
        return dict(
            pvalue=num(h.pvalue),
            method=h.method,
            test=HETEROGENEITY_TESTS[h.method],
            statistic=num(h.statistic),
            df=[num(d) for d in h.df],
            deviations=[num(d) for d in h.deviations],
            pvalues=[num(p) for p in h.pvalues],
            recipe_x_model_variance=num(h.interaction_variance),
            noise_variance=num(h.noise_variance),
            split_variance=num(h.split_variance),
            residual_variance=num(h.residual_variance),
        )

    def row(cell: dict) -> dict:
        label, also = _label(cell, report.identical)
        return dict(name=cell_name(cell), label=label, also=also)

    registration = report.registration
    return dict(
        vary={k: list(v) for k, v in report.vary.items()},
        grid=describe_grid(report.vary),
        cells=[dict(**row(c), recipe=dict(c)) for c in report.cells],
        identical=[
            dict(cells=[cell_name(c) for c in group], message=identical_message(group))
            for group in report.identical
        ],
        registration=None if registration is None else registration_record(registration),
        metric=report.metric,
        alpha=report.alpha,
        rope=report.rope,
        variants=[
            dict(
                variant=a.variant,
                baseline=a.baseline,
                cells=[dict(**row(c.cell), **verdict(c.verdict)) for c in a.cells],
                overall=verdict(a.overall),
                heterogeneity=heterogeneity(a.heterogeneity),
                n_better=a.n_better,
                robust=a.robust,
                answer=a.answer,
                sentence=a.sentence,
            )
            for a in report.variants
        ],
    )


def grid_cost(power, *, jobs: int = 1) -> str:
    """What a recipe grid costs with a planned design, and what its verdicts can detect
    (``cvkit plan --vary``), in one sentence.

    Parameters
    ----------
    power : cvkit.planning.GridPower
        The grid, the design each cell would run (its ``trainings`` and ``seconds``) and the
        projected power of one cell's verdict and of the grid average's
        (``cvkit.planning.grid_power``).
    jobs : int, default=1
        Jobs at once, for the time.

    Returns
    -------
    str
        The number of cells, trainings and (when known) time; the power of one cell's verdict at
        Holm's first step and the grid average's conservative power, with how it was projected.
    """
    design, n_cells = power.design, power.n_cells
    time = ""
    if design.seconds is not None:
        time = f", about {design.seconds * n_cells / jobs / 3600:.1f} h at {jobs} job(s) at once"
    effect = f"{power.min_effect:.3g} {stats.metric_label(power.metric)}"
    family = n_cells * power.n_variants
    return (
        f"a grid of {n_cells} recipe cells ({describe_grid(power.vary)}) at {design.describe()}"
        f"{'' if design.data_factor == 1 else f' on {design.n_samples} samples'}: "
        f"{design.trainings * n_cells} trainings{time} (cells already run, and jobs shared with earlier "
        f"runs, are reused). Power for {effect}: one cell's verdict {_percent(power.cell_power)} (one test "
        f"of a Holm family of {family} (cells x variants), the first at alpha {power.cell_alpha:.3g}; "
        f"{_detects(power.cell_detectable, power.target_power)}); the grid average's at least "
        f"{_percent(power.average_power)} (alpha {power.average_alpha:.3g} over the variants; "
        f"{_detects(power.average_detectable, power.target_power)}), projected with the single-design "
        f"variance: conservative, since the cells share splits and seeds and the variance of the "
        f"average lies between that / {n_cells} (independent cells) and that (perfectly correlated cells)"
    )


def _percent(power: float) -> str:
    return f"{100 * power:.0f}%"


def _detects(detectable: float, target: float) -> str:
    if not math.isfinite(detectable):
        return f"no difference reaches {_percent(target)} power"
    return f"detects {detectable:.3g} with {_percent(target)} power"


def default_grid_dir(reports_dir, variants, baseline, data_name: str) -> Path:
    """Where a grid lies without ``--out``: ``REPORTS/grid-<variants>-vs-<baseline>-<data>``.

    The name holds what the varied recipe does not: another data set or baseline gets a grid of
    its own, while adding values to ``--vary`` finds the same folder (its cells resume).

    Parameters
    ----------
    reports_dir : str or path
        The reports folder.
    variants : list
        The variants' specifications.
    baseline : str
        The baseline's specification.
    data_name : str
        The data set's name (``Dataset.name``).

    Returns
    -------
    Path
        The grid folder.
    """
    names = [
        Path(str(v)).stem for v in ([variants] if isinstance(variants, (str, os.PathLike)) else variants)
    ]
    label = "-".join(names) or "baseline"
    return Path(reports_dir) / f"grid-{label}-vs-{Path(str(baseline)).stem}-{data_name}"
