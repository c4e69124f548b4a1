"""Plan before you run: which cross-validation design can answer "is the variant better?" for a
smallest effect of interest, and at what cost.

A plan projects the power of the verdict's own test for each design (folds x repeats x seeds per
split, and more data) from a variance model: the components measured by an earlier run
(``plan_from_run``) or stated priors (``plan_from_priors``). The projection is
``cvkit.stats.design_power``; the calibration bench checks that designs stated to detect an effect
with 80% power do (``benchmarks/calibration.py``). Expected times come from the run's measured job
times, scaled by the training-set size of each design.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import stats
from .errors import ConfigError, OptionError

PLAN_FOLDS = (5, 10)
PLAN_REPEATS = (1, 2, 3, 5, 10, 20)
PLAN_SEEDS = (1, 2, 3, 5, 10)


@dataclass(frozen=True)
class PlannedDesign:
    """One design of a plan: its projected power for the smallest effect of interest, the smallest
    difference it detects with the target power, and its cost."""

    n_folds: int
    n_repeats: int
    n_seeds: int
    data_factor: float  # 1 = the data as it is
    n_samples: int
    power: float
    detectable: float  # the smallest true difference detected with the plan's target power
    trainings: int  # models trained, every model of the comparison together
    seconds: float | None  # expected training time of all of them, one job at a time
    reaches: bool

    def describe(self) -> str:
        seeds = "seed" if self.n_seeds == 1 else "seeds"
        repeats = "repeat" if self.n_repeats == 1 else "repeats"
        return f"{self.n_folds} folds x {self.n_repeats} {repeats} x {self.n_seeds} {seeds} per split"


@dataclass(frozen=True)
class DesignPlan:
    """What design answers the question: every planned design, the recommendation and one plain
    sentence. ``alpha_per_test`` is the level each comparison is planned at: alpha / the number of
    variants (Holm's first step, so that every variant's comparison gets the stated power)."""

    source: str  # "run <dir>" or "stated priors"
    metric: str
    min_effect: float
    alpha: float
    alpha_per_test: float
    target_power: float
    method: str  # the verdict's test whose power is projected
    baseline: str
    variants: tuple[str, ...]
    planned_for: str  # the variant whose difference is the noisiest: a design that answers it answers all
    n_samples: int
    class_counts: dict
    variance: stats.VarianceModel
    seconds_per_split: float | None  # measured: one split and seed, every model, at the run's folds
    designs: tuple[PlannedDesign, ...]
    recommended: PlannedDesign | None
    data_needed: float | None  # when no design on this data reaches the power: the data factor that does
    sentence: str
    sequential: tuple[SequentialDesign, ...] = ()  # --until-decided at the run's folds and seeds


@dataclass(frozen=True)
class SequentialDesign:
    """``cvkit evaluate --until-decided --max-repeats R`` projected: its power for the smallest
    effect (with its futility rule) and the repeats and trainings it takes on average."""

    n_folds: int
    n_seeds: int
    max_repeats: int
    power: float
    expected_repeats: float  # at the smallest effect of interest
    expected_trainings: float
    max_trainings: int


def plan_from_run(
    results,
    *,
    min_effect: float | None = None,
    metric: str | None = None,
    alpha: float | None = None,
    power: float = 0.8,
) -> DesignPlan:
    """Plan from an earlier run's variance components and measured job times.

    Parameters
    ----------
    results : cvkit.Results
        The earlier run (any design with at least 2 splits).
    min_effect : float, optional
        Smallest difference of ``metric`` worth detecting, stated in advance (default: the ROPE).
    metric : str, optional
        The verdict's metric (default: AUC, or the run's pre-registered plan's).
    alpha : float, optional
        Significance level of the verdict, split over the variants as Holm's first step does
        (default: 0.05, or the plan's).
    power : float
        Target power, in (0, 1).

    Returns
    -------
    DesignPlan

    Raises
    ------
    ConfigError
        When an argument is out of range or the run has no variant.
    """
    from .comparison import compare

    _check_power(power)
    report = compare(results, metric=metric, alpha=alpha, min_effect=min_effect, clinical=False)
    if not report.comparisons:
        raise ConfigError(
            f"{results.run_dir} has no variant to plan for: plan from a run with a baseline and a variant"
        )
    effect = report.comparisons[0].advice.min_effect
    metric, alpha = report.metric, report.alpha
    per_test = alpha / len(report.comparisons)
    # The noisiest comparison decides the design: the one with the largest detectable difference.
    noisiest = max(
        report.comparisons,
        key=lambda c: stats.detectable_effect(
            c.variance_model, power=power, alpha=per_test, method=c.ttest.method
        ),
    )
    data = results.run["data"]
    return _plan(
        noisiest.variance_model,
        source=f"run {results.run_dir}",
        metric=metric,
        min_effect=effect,
        alpha=alpha,
        alpha_per_test=per_test,
        power=power,
        method=noisiest.ttest.method,
        baseline=results.baseline,
        variants=tuple(results.variants),
        planned_for=noisiest.variant,
        class_counts=dict(data.get("class_counts") or {}),
        seconds_per_split=_seconds_per_split(results),
        seeds_known=noisiest.variance_model.n_seeds >= 2,
        from_run=True,
    )


def plan_from_priors(
    *,
    n_samples: int,
    fold_sd: float,
    min_effect: float,
    seed_sd: float = 0.0,
    folds: int = 5,
    n_variants: int = 1,
    class_counts: dict | None = None,
    metric: str | None = None,
    alpha: float | None = None,
    power: float = 0.8,
    seconds_per_job: float | None = None,
) -> DesignPlan:
    """Plan from stated priors instead of a run.

    The fold-to-fold variation beyond seed noise is taken as test-sample noise (it shrinks with the
    test-fold size and is shared by the repeats of one data set), which is what the calibration
    bench measured in every training regime; training-set variation is taken as negligible.

    Parameters
    ----------
    n_samples : int
        Samples in the cross-validation pool.
    fold_sd : float
        Standard deviation of the per-fold difference (variant - baseline) at ``folds`` folds, one
        seed per split, e.g. from a published or pilot study.
    min_effect : float
        Smallest difference worth detecting, stated in advance.
    seed_sd : float
        Standard deviation of one job's difference between training seeds on the same split (0:
        unknown, and no seeds lever).
    folds : int
        The number of folds ``fold_sd`` was measured at.
    n_variants : int
        Variants to be compared with the baseline (alpha is split over them).
    class_counts : dict, optional
        Samples per class, for the plan's header.
    metric, alpha, power
        As in ``plan_from_run`` (default: AUC, 0.05, 0.8).
    seconds_per_job : float, optional
        Training time of one job of one model at ``folds`` folds (no time column without it).

    Returns
    -------
    DesignPlan
    """
    _check_power(power)
    metric = "auc" if metric is None else metric
    alpha = 0.05 if alpha is None else alpha
    if metric not in stats.VERDICT_METRICS:
        raise ConfigError(f"metric {metric!r}: choose one of {', '.join(stats.VERDICT_METRICS)}")
    if not (math.isfinite(alpha) and 0 < alpha < 1):
        raise ConfigError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    for name, value in (("fold_sd", fold_sd), ("min_effect", min_effect)):
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a positive number, got {value}")
    if not (math.isfinite(seed_sd) and 0 <= seed_sd < fold_sd):
        raise ConfigError(f"seed_sd must lie in [0, fold_sd), got {seed_sd}")
    if n_samples < 2 * folds or folds < 2:
        raise ConfigError(
            f"need folds >= 2 and at least 2 samples per fold, got {n_samples} samples, {folds} folds"
        )
    if n_variants < 1:
        raise ConfigError(f"n_variants must be at least 1, got {n_variants}")
    n_test = n_samples / folds
    rest = fold_sd**2 - seed_sd**2
    model = stats.VarianceModel(
        n_samples=n_samples, n_folds=folds, n_repeats=1, n_seeds=1, test_noise=rest * n_test,
        seed_var=seed_sd**2, repeat_var=0.0, training_var=0.0, split_rest=rest,
    )  # fmt: skip
    seconds = None if seconds_per_job is None else seconds_per_job * (1 + n_variants)
    return _plan(
        model,
        source="stated priors",
        metric=metric,
        min_effect=min_effect,
        alpha=alpha,
        alpha_per_test=alpha / n_variants,
        power=power,
        method=stats.DEFAULT_VERDICT_METHOD,
        baseline="baseline",
        variants=tuple(f"variant {i + 1}" for i in range(n_variants)),
        planned_for="each variant",
        class_counts=dict(class_counts or {}),
        seconds_per_split=seconds,
        seeds_known=seed_sd > 0,
        from_run=False,
    )


def _plan(
    model: stats.VarianceModel,
    *,
    source,
    metric,
    min_effect,
    alpha,
    alpha_per_test,
    power,
    method,
    baseline,
    variants,
    planned_for,
    class_counts,
    seconds_per_split,
    seeds_known,
    from_run,
) -> DesignPlan:
    n_models = 1 + len(variants)
    k0 = model.n_folds
    s0 = max(1, int(round(model.n_seeds)))
    # Seed noise measured (2+ seeds per split, or stated): any number of seeds; else as run.
    seed_choices = sorted({s for s in PLAN_SEEDS if s >= s0} | {s0}) if seeds_known else [s0]
    fold_choices = sorted({k0, *PLAN_FOLDS})

    def design(k, r, s, m=1.0) -> PlannedDesign:
        return _project(
            model, min_effect, alpha_per_test, power, method, n_models, seconds_per_split, k, r, s, m
        )

    grid = [design(k, r, s) for k in fold_choices for r in PLAN_REPEATS for s in seed_choices]
    reaching = [d for d in grid if d.reaches]
    recommended = _cheapest(reaching)
    data_needed = None
    data_rows = []
    if recommended is None:
        for factor in stats.DESIGN_DATA_FACTORS:
            there = [
                design(k, r, s, factor) for k in fold_choices for r in PLAN_REPEATS for s in seed_choices
            ]
            recommended = _cheapest(d for d in there if d.reaches)
            if recommended is not None:
                data_needed = factor
                break
        if recommended is None:  # not even the most data: the most powerful designs at the largest
            data_rows = [max(there, key=lambda d: d.power)]
        else:  # the recommended design on the way to the data it needs
            k, r, s = recommended.n_folds, recommended.n_repeats, recommended.n_seeds
            data_rows = [design(k, r, s, f) for f in stats.DESIGN_DATA_FACTORS if f < data_needed]
    # The rows shown (the table stays short): the run's own design; its folds over the repeats at
    # the fewest seeds; the other fold choices at 3 and 10 repeats; more seeds at 3 and 10 repeats;
    # the recommendation; and the data rows tried on the way to it.
    picked = [d for d in grid if d.n_seeds == seed_choices[0] and (d.n_folds == k0 or d.n_repeats in (3, 10))]
    picked += [
        d for d in grid if d.n_folds == k0 and d.n_seeds in seed_choices[1:3] and d.n_repeats in (3, 10)
    ]
    if from_run:  # the design the variance model was measured at
        picked.append(design(k0, model.n_repeats, s0))
    picked += [d for d in (recommended, *data_rows[-3:]) if d is not None]
    shown = {(d.n_folds, d.n_repeats, d.n_seeds, d.data_factor): d for d in picked}
    designs = tuple(sorted(shown.values(), key=lambda d: (d.data_factor, d.trainings, d.n_folds)))
    sentence = _sentence(
        recommended, data_needed, max(grid, key=lambda d: d.power), min_effect, metric, power, model.n_samples
    )
    return DesignPlan(
        source=source, metric=metric, min_effect=min_effect, alpha=alpha, alpha_per_test=alpha_per_test,
        target_power=power, method=method, baseline=baseline, variants=variants, planned_for=planned_for,
        n_samples=model.n_samples, class_counts=class_counts, variance=model,
        seconds_per_split=seconds_per_split, designs=designs, recommended=recommended,
        data_needed=data_needed, sentence=sentence,
        sequential=tuple(
            _sequential_design(model, min_effect, alpha_per_test, method, n_models, k0, s0, r)
            for r in SEQUENTIAL_MAXIMA
        ),
    )  # fmt: skip


SEQUENTIAL_MAXIMA = (5, 10, 20)


def plan_sequential(plan: DesignPlan, max_repeats: int) -> SequentialDesign:
    """The sequential rule up to ``max_repeats`` repeats, projected as ``plan`` projects its own
    (at the folds and seeds per split its variance model was measured at)."""
    if max_repeats < 2:
        raise ConfigError(f"max_repeats must be at least 2 (the first look needs 2), got {max_repeats}")
    model = plan.variance
    return _sequential_design(
        model, plan.min_effect, plan.alpha_per_test, plan.method, 1 + len(plan.variants), model.n_folds,
        max(1, int(round(model.n_seeds))), max_repeats,
    )  # fmt: skip


def _sequential_design(model, min_effect, alpha, method, n_models, k, s, max_repeats) -> SequentialDesign:
    """The sequential rule's projection: looks after 2, 3, ..., ``max_repeats`` repeats."""
    projected = [
        stats.design_variance(model, n_folds=k, n_repeats=r, n_seeds=s, method=method)
        for r in range(2, max_repeats + 1)
    ]
    variances, dfs = zip(*projected)
    power, expected_look = stats.sequential_design_power(variances, min_effect, alpha, dfs=dfs)
    repeats = expected_look + 1  # look i (from 1) comes after i + 1 repeats
    return SequentialDesign(
        k, s, max_repeats, power, repeats, n_models * k * s * repeats, n_models * k * s * max_repeats
    )


def plan_design(plan: DesignPlan, n_folds: int, n_repeats: int, n_seeds: int, data_factor: float = 1.0):
    """Any design projected as ``plan`` projects its own (e.g. one its table does not show)."""
    return _project(
        plan.variance, plan.min_effect, plan.alpha_per_test, plan.target_power, plan.method,
        1 + len(plan.variants), plan.seconds_per_split, n_folds, n_repeats, n_seeds, data_factor,
    )  # fmt: skip


@dataclass(frozen=True)
class GridPower:
    """What a recipe grid's verdicts can detect when every cell runs one planned design.

    Each cell's verdict is one test of a Holm family of cells x variants: its power is projected
    at Holm's first step, alpha / (cells x variants), with the plan's variance model (each cell as
    noisy as the design the model describes). The grid average is tested per job over all cells,
    Holm over the variants (alpha / variants). The cells share splits and seeds, so the variance
    of the per-job average lies between the single-design variance / cells (independent cells) and
    the single-design variance (perfectly correlated cells); its power is projected with the
    single-design variance, a lower bound (conservative).
    """

    vary: dict  # the grid, as ``cvkit.multiverse.parse_vary`` gives it
    design: PlannedDesign  # what every cell runs
    metric: str
    min_effect: float
    target_power: float
    n_cells: int
    n_variants: int
    cell_alpha: float
    cell_power: float  # one cell's verdict, at Holm's first step, for the smallest effect
    cell_detectable: float  # the smallest true difference one cell's verdict detects with the target power
    average_alpha: float
    average_power: float  # the grid average's verdict, conservatively (a lower bound)
    average_detectable: float  # conservatively (an upper bound)

    @property
    def basis(self) -> str:
        """How the powers were projected, in words (also a grid plan's ``[power] grid_basis``)."""
        return GRID_BASIS


GRID_BASIS = (
    "projected and detectable (average_* in cvkit plan --json): the grid-average verdict, tested per "
    "job over the cells at alpha / variants, projected with the single-design variance; conservative, "
    "since the cells share splits and seeds and the variance of the per-job average lies between the "
    "single-design variance / cells (independent cells) and the single-design variance (perfectly "
    "correlated cells). cell_*: one cell's verdict at Holm's first step, alpha / (cells x variants). "
    "Each cell as noisy as the plan's variance model"
)


def grid_power(plan: DesignPlan, design: PlannedDesign, vary: dict) -> GridPower:
    """The power of a recipe grid's per-cell and grid-average verdicts when every cell of ``vary``
    runs ``design``, projected as ``plan`` projects its own designs (see ``GridPower``).

    Parameters
    ----------
    plan : DesignPlan
        The plan whose variance model, smallest effect, alpha, target power and test are used.
    design : PlannedDesign
        The fixed design every cell runs.
    vary : dict of str to list
        The grid (``cvkit.multiverse.parse_vary``'s): its cells are every combination of values.

    Returns
    -------
    GridPower
    """
    n_cells = math.prod(len(values) for values in vary.values())
    n_variants = len(plan.variants)
    cell_alpha = plan.alpha / (n_cells * n_variants)

    def projected(alpha):
        where = dict(
            n_folds=design.n_folds, n_repeats=design.n_repeats, n_seeds=design.n_seeds,
            data_factor=design.data_factor, alpha=alpha, method=plan.method,
        )  # fmt: skip
        return (
            stats.design_power(plan.variance, plan.min_effect, **where),
            stats.detectable_effect(plan.variance, power=plan.target_power, **where),
        )

    # The grid average's variance is at most the single design's: its projection there is the
    # plan's own at alpha / variants, the lower bound stated.
    cell_power, cell_detectable = projected(cell_alpha)
    average_power, average_detectable = projected(plan.alpha_per_test)
    return GridPower(
        dict(vary), design, plan.metric, plan.min_effect, plan.target_power, n_cells, n_variants, cell_alpha,
        cell_power, cell_detectable, plan.alpha_per_test, average_power, average_detectable,
    )  # fmt: skip


def _project(
    model, min_effect, alpha, power, method, n_models, seconds_per_split, k, r, s, m
) -> PlannedDesign:
    p = stats.design_power(
        model, min_effect, n_folds=k, n_repeats=r, n_seeds=s, data_factor=m, alpha=alpha, method=method
    )
    detectable = stats.detectable_effect(
        model, power=power, alpha=alpha, method=method, n_folds=k, n_repeats=r, n_seeds=s, data_factor=m
    )
    seconds = None
    if seconds_per_split is not None:
        # Training time grows with the training set: (k - 1) / k of m times the data.
        k0 = model.n_folds
        seconds = seconds_per_split * k * r * s * m * ((k - 1) / k) / ((k0 - 1) / k0)
    return PlannedDesign(
        k, r, s, m, int(round(m * model.n_samples)), p, detectable, n_models * k * r * s, seconds, p >= power
    )


def _sentence(recommended, data_needed, best, min_effect, metric, power, n_samples) -> str:
    effect = f"a difference of {min_effect:.3g} {stats.metric_label(metric)}"
    target = f"{100 * power:.0f}%"
    if recommended is not None and data_needed is None:
        return (
            f"Run {recommended.describe()}: the fewest trainings ({recommended.trainings}) that detect "
            f"{effect} with {target} power (projected {100 * recommended.power:.0f}%)."
        )
    head = (
        f"No design on these {n_samples} samples reaches {target} power for {effect} "
        f"(at most {100 * best.power:.0f}%, with {best.describe()})"
    )
    if recommended is not None:
        return (
            f"{head}; with about {data_needed:g}x the data (about {recommended.n_samples} samples) "
            f"{recommended.describe()} would (projected {100 * recommended.power:.0f}%)."
        )
    return f"{head}; not even {stats.DESIGN_DATA_FACTORS[-1]:g}x the data would."


def _cheapest(designs) -> PlannedDesign | None:
    designs = list(designs)
    return min(designs, key=lambda d: (d.trainings, -d.power)) if designs else None


def _seconds_per_split(results) -> float | None:
    """Mean training seconds of one job, summed over the run's models: one split and seed of all."""
    durations: dict[str, list[float]] = {}
    for job in results.jobs:
        if job["status"] == "done" and job["duration_s"]:
            durations.setdefault(job["model"], []).append(float(job["duration_s"]))
    if set(durations) != set(results.model_names):
        return None
    return float(sum(sum(v) / len(v) for v in durations.values()))


def _check_power(power: float) -> None:
    if not (math.isfinite(power) and 0 < power < 1):
        raise ConfigError(f"power must lie in (0, 1), got {power}")


# A pre-registered analysis: what `cvkit plan --write` fixes before the run and `cvkit evaluate
# --plan` runs. The hash is over the content (not the file's bytes), so TOML and JSON forms of one
# plan, or a file with other comments, have one hash.
DECISION_RULE = (
    "the verdict's test (sampling_within; corrected_t with one repeat) of variant - baseline on the "
    "per-job differences, Holm over the variants at alpha: better or worse when it rejects (but "
    "negligible when the whole interval lies inside the ROPE); equivalent when the Bayesian "
    "correlated t puts 95% inside the ROPE; inconclusive otherwise"
)
FIXED_DESIGN = "fixed design: every job runs, one analysis at the end"
SEQUENTIAL_STOPPING = (
    "sequential (cvkit evaluate --until-decided): a look after 2, 3, ... repeats up to the design's "
    "repeats; O'Brien-Fleming-type alpha spending on the information fraction (alpha split over the "
    "variants), non-binding futility at 10% conditional power for the smallest effect, equivalence "
    "when the repeated interval lies inside the ROPE"
)
_SECTIONS = {
    "analysis": {"metric": str, "alpha": float, "rope": float, "min_effect": float, "decision_rule": str,
                 "stopping_rule": str},
    "models": {"baseline": str, "variants": list},
    "design": {"folds": int, "repeats": int, "seeds": int, "seed": int, "sequential": bool, "vary": dict},
    "power": {"target": float, "projected": float, "detectable": float, "source": str, "cell_alpha": float,
              "cell_projected": float, "cell_detectable": float, "grid_basis": str},
}  # fmt: skip
# Optional keys are absent when unused, so that plans written before them keep their hash.
_OPTIONAL = {
    ("analysis", "rope"), ("power", "detectable"), ("design", "sequential"), ("design", "vary"),
    *(("power", key) for key in ("cell_alpha", "cell_projected", "cell_detectable", "grid_basis")),
}  # fmt: skip


@dataclass(frozen=True)
class AnalysisPlan:
    """A pre-registered analysis: the primary metric, alpha, ROPE, smallest effect, models, design,
    decision and stopping rule, fixed before the run. ``sha256`` identifies its content."""

    content: dict
    sha256: str

    @classmethod
    def from_content(cls, content: dict) -> AnalysisPlan:
        import hashlib
        import json

        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return cls(content, hashlib.sha256(canonical.encode("utf-8")).hexdigest())

    def record(self) -> dict:
        """What a run stores: the content and its hash."""
        return dict(sha256=self.sha256, content=self.content)

    @property
    def analysis(self) -> dict:
        return self.content["analysis"]

    @property
    def design(self) -> dict:
        return self.content["design"]

    @property
    def models(self) -> dict:
        return self.content["models"]


def analysis_plan(
    plan: DesignPlan,
    design: PlannedDesign | SequentialDesign,
    *,
    baseline: str,
    variants: list[str],
    rope: float | None = None,
    seed: int = 0,
    vary: dict | None = None,
) -> AnalysisPlan:
    """The pre-registration of ``design`` from ``plan``, for ``baseline`` and ``variants``
    (plugin files or built-in names, as ``cvkit evaluate`` takes them).

    Parameters
    ----------
    plan : DesignPlan
        The plan whose metric, alpha, smallest effect and target power are fixed.
    design : PlannedDesign or SequentialDesign
        The design to run: a fixed one (one of ``plan.designs``, or any other) or a sequential one
        (``plan.sequential``, or ``plan_sequential``), whose maximum becomes the design's repeats.
    baseline : str
        The baseline, as ``cvkit evaluate --baseline`` takes it.
    variants : list of str
        The variants, as ``cvkit evaluate`` takes them.
    rope : float, optional
        The ROPE (default: the metric's own, resolved at analysis time).
    seed : int
        The seed of the splits and training seeds.
    vary : dict or None, default=None
        A recipe grid (``cvkit.multiverse.parse_vary``'s) to run the design in every cell of
        (``[design] vary``); None: a single recipe. Not with a sequential design. With a grid,
        ``[power]`` states the grid's verdicts (``grid_power``): ``projected`` and ``detectable``
        are then the grid average's (conservatively: the single design's), ``cell_projected`` and
        ``cell_detectable`` one cell's at Holm's first step ``cell_alpha``, and ``grid_basis``
        says so.

    Returns
    -------
    AnalysisPlan
    """
    if not variants:
        raise ConfigError("a pre-registered plan needs at least one variant")
    sequential = isinstance(design, SequentialDesign)
    if sequential and vary:
        from .multiverse import GRID_NOT_SEQUENTIAL

        raise ConfigError(GRID_NOT_SEQUENTIAL)
    analysis = dict(
        metric=plan.metric, alpha=plan.alpha, min_effect=plan.min_effect, decision_rule=DECISION_RULE,
        stopping_rule=SEQUENTIAL_STOPPING if sequential else FIXED_DESIGN,
    )  # fmt: skip
    if rope is not None:
        analysis["rope"] = float(rope)
    power = dict(target=plan.target_power, projected=round(design.power, 4), source=plan.source)
    if not sequential and math.isfinite(design.detectable):
        power["detectable"] = round(design.detectable, 5)
    if vary:
        power.update(_grid_power_record(grid_power(plan, design, vary)))
    repeats = design.max_repeats if sequential else design.n_repeats
    fixed = dict(folds=design.n_folds, repeats=repeats, seeds=design.n_seeds, seed=seed)
    if vary:
        fixed["vary"] = {name: list(values) for name, values in vary.items()}
    return AnalysisPlan.from_content(
        dict(
            analysis=analysis,
            models=dict(baseline=str(baseline), variants=[str(v) for v in variants]),
            design={**fixed, "sequential": True} if sequential else fixed,
            power=power,
        )
    )


def _grid_power_record(grid: GridPower) -> dict:
    """A grid plan's ``[power]`` beyond the single design's: one cell's verdict at Holm's first
    step, and how ``projected`` (the grid average's, conservatively) was projected."""
    record = dict(cell_alpha=grid.cell_alpha, cell_projected=round(grid.cell_power, 4), grid_basis=grid.basis)
    if math.isfinite(grid.cell_detectable):  # as ``detectable``: left out when no effect is detected
        record["cell_detectable"] = round(grid.cell_detectable, 5)
    return record


def write_analysis_plan(plan: AnalysisPlan, path) -> None:
    """Write ``plan`` to ``path``: TOML (``.toml``) or JSON (``.json``), atomically."""
    import json
    from pathlib import Path

    from .files import write_text

    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        write_text(path, json.dumps(plan.content, indent=1, ensure_ascii=False) + "\n")
        return
    if suffix != ".toml":
        raise ConfigError(f"{path}: a plan file ends in .toml or .json")
    lines = [
        "# cvkit pre-registered analysis plan: run it with cvkit evaluate --plan " + Path(path).name,
        f"# content sha256 {plan.sha256}",
    ]
    for section, keys in _SECTIONS.items():
        lines += ["", f"[{section}]"]
        for key in keys:
            if key in plan.content[section]:
                lines.append(f"{key} = {_toml_value(plan.content[section][key])}")
    write_text(path, "\n".join(lines) + "\n")


def read_analysis_plan(path) -> AnalysisPlan:
    """Read and check a plan file written by ``write_analysis_plan`` (or by hand).

    Raises
    ------
    ConfigError
        One line naming the file and the key when the file is unreadable or a key is missing,
        unknown or of the wrong type.
    """
    import json
    from pathlib import Path

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the plan file ({exc})") from None
    try:
        if path.suffix.lower() == ".json":
            content = json.loads(text)
        else:
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            content = tomllib.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a valid plan file ({exc})") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: a plan file holds the sections {', '.join(_SECTIONS)}")
    checked: dict = {}
    for section, keys in _SECTIONS.items():
        values = content.get(section)
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: section [{section}] is missing")
        unknown = sorted(set(values) - set(keys))
        if unknown:
            raise ConfigError(f"{path}: [{section}] has unknown key(s) {', '.join(unknown)}")
        checked[section] = {}
        for key, kind in keys.items():
            if key not in values:
                if (section, key) in _OPTIONAL:
                    continue
                raise ConfigError(f"{path}: [{section}] lacks {key}")
            value = values[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                raise ConfigError(f"{path}: [{section}] {key} must be a {kind.__name__}, got {value!r}")
            checked[section][key] = value
    unknown = sorted(set(content) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}")
    models = checked["models"]
    if not models["variants"] or not all(isinstance(v, str) and v for v in models["variants"]):
        raise ConfigError(f"{path}: [models] variants must be a list of plugin files or built-in names")
    analysis = checked["analysis"]
    if analysis["metric"] not in stats.VERDICT_METRICS:
        choices = ", ".join(stats.VERDICT_METRICS)
        raise ConfigError(f"{path}: [analysis] metric {analysis['metric']!r}: choose one of {choices}")
    rope = analysis.get("rope", 0.0)
    for key, ok, rule in (
        ("alpha", 0 < analysis["alpha"] < 1, "lie strictly between 0 and 1"),
        ("min_effect", math.isfinite(analysis["min_effect"]) and analysis["min_effect"] > 0, "be positive"),
        ("rope", math.isfinite(rope) and rope >= 0, "be a finite number of at least 0"),
    ):
        if not ok:
            raise ConfigError(f"{path}: [analysis] {key} must {rule}, got {analysis[key]}")
    design = checked["design"]
    if design["folds"] < 2 or design["repeats"] < 1 or design["seeds"] < 1:
        raise ConfigError(f"{path}: [design] needs folds >= 2, repeats >= 1 and seeds >= 1")
    if "vary" in design:
        from .multiverse import GRID_NOT_SEQUENTIAL, parse_vary

        if design.get("sequential"):
            raise ConfigError(f"{path}: {GRID_NOT_SEQUENTIAL}")
        try:  # typed as the recipe takes them: the content hashed is the grid that runs
            design["vary"] = parse_vary(design["vary"])
        except OptionError as error:
            raise ConfigError(f"{path}: [design] vary: {error.problem}") from None
    return AnalysisPlan.from_content(checked)


def _toml_value(value) -> str:
    import json

    if isinstance(value, (str, bool)):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string; true, false
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table; its keys are recipe field names (bare keys)
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return repr(value)


@dataclass(frozen=True)
class SequentialRule:
    """How ``cvkit evaluate --until-decided`` stops: after each stage of repeats (the first look
    at 2), every variant still undecided is looked at by ``stats.look_at_jobs`` with alpha split
    over the variants (Bonferroni: each variant's rule keeps its own level); the run stops when
    every variant is decided or at ``max_repeats``.

    Parameters
    ----------
    max_repeats : int
        The most repeats the run may take (at least 2).
    metric : str
        The verdict's metric the rule decides on.
    alpha : float
        Overall two-sided level of each variant's rule, before the split over variants.
    min_effect : float, optional
        Smallest effect of interest, for the futility rule (default: the metric's ROPE).
    rope : float, optional
        Region of practical equivalence (default: the metric's own).
    futility : float
        Conditional power below which a look stops for futility.
    """

    max_repeats: int
    metric: str = "auc"
    alpha: float = 0.05
    min_effect: float | None = None
    rope: float | None = None
    futility: float = stats.FUTILITY

    def __post_init__(self):
        if self.max_repeats < 2:
            raise ConfigError(
                f"max_repeats must be at least 2 (the first look needs 2), got {self.max_repeats}"
            )
        if self.metric not in stats.VERDICT_METRICS:
            raise ConfigError(f"metric {self.metric!r}: choose one of {', '.join(stats.VERDICT_METRICS)}")
        if not (math.isfinite(self.alpha) and 0 < self.alpha < 1):
            raise ConfigError(f"alpha must lie strictly between 0 and 1, got {self.alpha}")
        for name in ("min_effect", "rope"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value}")

    def record(self) -> dict:
        return dict(
            max_repeats=self.max_repeats, metric=self.metric, alpha=self.alpha, min_effect=self.min_effect,
            rope=self.rope, futility=self.futility,
        )  # fmt: skip


def sequential_looks(results, rule: SequentialRule, previous: dict | None = None) -> dict:
    """The next look for every variant of ``results`` not yet decided: variant -> its looks so far
    (``stats.SequentialLook``), extended by one where the run has a new stage of repeats."""
    from .comparison import paired_job_scores

    previous = previous or {}
    n_test = results.fold_sizes[1]
    positives = np.mean([np.sum(results.labels[s["test"]] == results.positive) for s in results.plan])
    rope = rule.rope if rule.rope is not None else stats.default_rope(rule.metric, n_test, float(positives))
    min_effect = rule.min_effect or rope
    alpha = rule.alpha / max(1, len(results.variants))
    looks = {}
    for variant in results.variants:
        before = tuple(previous.get(variant, ()))
        if before and before[-1].decision != "continue":
            looks[variant] = before
            continue
        jobs = paired_job_scores(results, variant, metric=rule.metric)
        repeats = len(np.unique(jobs.repeat))
        if repeats < 2 or (before and repeats <= before[-1].repeats):
            looks[variant] = before
            continue
        look = stats.look_at_jobs(
            jobs, max_repeats=rule.max_repeats, previous=before, alpha=alpha, min_effect=min_effect,
            rope=rope, futility=rule.futility,
        )  # fmt: skip
        looks[variant] = (*before, look)
    return looks
