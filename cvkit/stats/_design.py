"""Design advice: what cross-validation design detects a pre-specified smallest effect?

The effect to design for is stated in advance (``min_effect``, the ROPE by default), never the
observed difference: designing for the observed difference is circular. The variance of the
verdict's estimate is built from components estimated on a run, each scaled by the lever that
changes it:

- test-sample noise: the per-sample variance of the paired difference (``test_noise``); a fold of
  n_test samples carries test_noise / n_test, and the data-set-level part every repeat shares is
  test_noise / n. Only more data shrinks it.
- seed noise (``seed_var``, per job): independent across splits, divided by the seeds per split.
- split variation (``repeat_var``): what a whole repeat varies by within one data set beyond seed
  noise; divided by the repeats, and assumed to shrink as 1/k with more folds.
- training-set variation (``training_var``, per split, beyond seed and test-sample noise): taken as
  additive over training samples, it shrinks within a data set as 1/((k - 1) n), and the share the
  data set fixes (what ``sampling_training`` and the corrected t's overlap term are for) as 1/n.

Assumptions: seed and training variation stay as measured when data are added (learners usually
get more stable with more data, so the data projection errs on the side of more data); the effect
does not change with the training-set size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._metrics import metric_label
from ._power import two_sided_t_power
from ._verdict import DEFAULT_METHOD, FALLBACK_METHOD, DifferenceSummaries, PairedJobScores, satterthwaite

DESIGN_DATA_FACTORS = (1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)


@dataclass(frozen=True)
class VarianceModel:
    n_samples: int  # samples scored once per repeat (folds x test size)
    n_folds: int
    n_repeats: int
    n_seeds: float
    test_noise: float | None  # per-sample variance of the paired difference; None when unknown
    seed_var: float  # variance of one job's difference around its split's mean
    repeat_var: float  # within-data-set variance of a repeat's mean beyond seed noise (k as run)
    training_var: float  # per-split variance beyond seed and test-sample noise
    split_rest: float  # per-split variance beyond seed noise (test samples and training set), as run


@dataclass(frozen=True)
class DesignProjection:
    n_folds: int
    n_repeats: int
    n_seeds: int
    data_factor: float  # 1 = this data set's size
    power: float

    @property
    def trainings(self) -> int:
        """Models trained per compared model."""
        return self.n_folds * self.n_repeats * self.n_seeds

    def describe(self) -> str:
        seeds = "seed" if self.n_seeds == 1 else "seeds"
        return f"{self.n_folds} folds x {self.n_repeats} repeats x {self.n_seeds} {seeds} per split"


@dataclass(frozen=True)
class DesignAdvice:
    min_effect: float
    target_power: float
    alpha: float
    method: str
    current: DesignProjection
    by_lever: dict  # "repeats" | "seeds" | "folds" -> the cheapest projection that reaches, or None
    cheapest: DesignProjection | None  # the fewest trainings over all levers on this data set
    best_on_this_data: DesignProjection  # the most power any design reaches on this data set
    data_needed: float | None  # when no design on this data reaches: the data factor that does (None: > 8x)
    data_design: DesignProjection | None  # the cheapest design reaching at that data factor
    sentence: str


def estimate_variance_model(jobs: PairedJobScores) -> VarianceModel:
    """Variance components of the paired difference from one run (see the module docstring)."""
    parts = DifferenceSummaries(jobs)
    k, s = parts.n_folds, parts.harmonic_seeds
    seed_part = parts.seed_var / s
    test_noise = None if jobs.diff_variance is None else float(np.mean(jobs.diff_variance)) * jobs.n_test
    fold_test = 0.0 if test_noise is None else test_noise / jobs.n_test
    training = max(0.0, parts.split_var - seed_part - fold_test)
    if len(parts.repeat_means) >= 2:
        repeat_var = max(0.0, float(parts.repeat_means.var(ddof=1)) - seed_part / k)
    else:  # one repeat: bound it by the training variation of a fold mean
        repeat_var = training / k
    return VarianceModel(
        n_samples=int(round(k * jobs.n_test)), n_folds=k, n_repeats=parts.n_repeats, n_seeds=s,
        test_noise=test_noise, seed_var=parts.seed_var, repeat_var=repeat_var, training_var=training,
        split_rest=max(0.0, parts.split_var - seed_part),
    )  # fmt: skip


def design_power(
    model: VarianceModel,
    effect: float,
    *,
    n_folds: int,
    n_repeats: int,
    n_seeds: int,
    data_factor: float = 1.0,
    alpha: float = 0.05,
    method: str = DEFAULT_METHOD,
) -> float:
    """Projected power of the verdict's test for a true difference under a design.

    Parameters
    ----------
    model : VarianceModel
        The run's variance components (``estimate_variance_model``).
    effect : float
        The true difference (positive).
    n_folds : int
        Folds of the design.
    n_repeats : int
        Repeats of the design.
    n_seeds : int
        Training seeds per split.
    data_factor : float, default=1.0
        The data set's size as a multiple of this one's.
    alpha : float, default=0.05
        Significance level.
    method : str, default="sampling_within"
        The test whose power is projected.

    Returns
    -------
    float
        The projected power, between 0 and 1.

    Raises
    ------
    ValueError
        A non-positive ``effect`` or a method without a design projection.
    """
    if effect <= 0:
        raise ValueError(f"effect must be positive, got {effect}")
    variance, df = design_variance(
        model, n_folds=n_folds, n_repeats=n_repeats, n_seeds=n_seeds, data_factor=data_factor, method=method
    )
    if variance <= 0:
        return 1.0
    return two_sided_t_power(effect / np.sqrt(variance), df, alpha)


def design_variance(
    model: VarianceModel,
    *,
    n_folds: int,
    n_repeats: int,
    n_seeds: int,
    data_factor: float = 1.0,
    method: str = DEFAULT_METHOD,
) -> tuple[float, float]:
    """Projected variance of the verdict's difference under a design, and its degrees of freedom.

    The variance the verdict's test (``method``) would estimate for its difference under the
    design, and its degrees of freedom, projected from the variance model.

    A sampling method falls back to ``FALLBACK_METHOD`` (the corrected t) when the design has one
    repeat or the model no test-sample noise.

    Parameters
    ----------
    model : VarianceModel
        The run's variance components (``estimate_variance_model``).
    n_folds : int
        Folds of the design (at least 2).
    n_repeats : int
        Repeats of the design.
    n_seeds : int
        Training seeds per split.
    data_factor : float, default=1.0
        The data set's size as a multiple of this one's.
    method : str, default="sampling_within"
        The verdict's test whose variance is projected: ``sampling_within``, ``sampling``,
        ``sampling_overlap``, ``sampling_training``, ``corrected_t`` or ``corrected_t_df_k1``.

    Returns
    -------
    variance : float
        The projected variance of the estimated difference, in the metric's units squared.
    df : float
        Its (Satterthwaite) degrees of freedom.

    Raises
    ------
    ValueError
        A method without a design projection (``seed_split``).
    """
    k, r, s, m = n_folds, n_repeats, n_seeds, data_factor
    n = model.n_samples * m
    if method.startswith("sampling") and (r < 2 or model.test_noise is None):
        method = FALLBACK_METHOD
    test_noise = 0.0 if model.test_noise is None else model.test_noise
    data_set = test_noise / n
    seed = model.seed_var / s
    # Training-set variation within a data set, per split: with additive training effects it is
    # the data set's share (n_test/n_train of it) and shrinks as 1/((k - 1) n).
    training = model.training_var * (model.n_folds - 1) / ((k - 1) * m)
    # What the per-split differences vary by beyond seed noise, scaled as test-sample noise (with
    # the test-fold size). Not seed_var + test_noise / n_test: a job's test-sample variance also
    # holds the seed x sample interaction, which seed_var already counts.
    split_var = seed + model.split_rest * k / (model.n_folds * m)
    J = k * r
    if method == "sampling_within":
        terms = [(data_set, n - 1), (split_var / J, r * (k - 1))]
    elif method.startswith("sampling"):
        terms = [(data_set, n - 1), ((seed / k + model.repeat_var * model.n_folds / k) / r, r - 1)]
        if method == "sampling_overlap":
            terms.append((training / (k - 1), J - 1))
        elif method == "sampling_training":
            terms.append((training * (k - 1), J - 1))
    elif method in ("corrected_t", "corrected_t_df_k1"):
        terms = [((1 / J + 1 / (k - 1)) * split_var, J - 1 if method == "corrected_t" else k - 1)]
    else:
        raise ValueError(f"no design projection for method {method!r}")
    return satterthwaite(terms)


def advise_design(
    model: VarianceModel,
    min_effect: float,
    *,
    metric: str = "auc",
    power: float = 0.8,
    alpha: float = 0.05,
    method: str = DEFAULT_METHOD,
    folds=(5, 10),
    max_repeats: int = 20,
    max_seeds: int = 10,
) -> DesignAdvice:
    """The plain answer to "what design detects ``min_effect`` with ``power``?": the current
    design's power, the cheapest design on this data set that reaches it (by repeats, seeds, folds
    or all together), or, when none does, about how much more data would.

    Parameters
    ----------
    model : VarianceModel
        The run's variance components (``estimate_variance_model``).
    min_effect : float
        The smallest true difference worth detecting, stated in advance (positive).
    metric : str, default="auc"
        The metric, for the sentence.
    power : float, default=0.8
        The power to reach.
    alpha : float, default=0.05
        Significance level of the test.
    method : str, default="sampling_within"
        The verdict's test whose power is projected.
    folds : sequence of int, default=(5, 10)
        Fold counts a new design may use.
    max_repeats : int, default=20
        The most repeats a design may use.
    max_seeds : int, default=10
        The most training seeds per split a design may use.

    Returns
    -------
    DesignAdvice
        The current power, the power by each lever, the cheapest design that reaches ``power``,
        the data needed when none does, and the advice as a ``sentence``.

    Raises
    ------
    ValueError
        A ``min_effect`` that is not positive.
    """
    if min_effect <= 0:
        raise ValueError(f"min_effect must be positive, got {min_effect}")
    k0, r0, s0 = model.n_folds, model.n_repeats, max(1, int(round(model.n_seeds)))

    def project(k, r, s, m=1.0):
        p = design_power(
            model, min_effect, n_folds=k, n_repeats=r, n_seeds=s, data_factor=m, alpha=alpha, method=method
        )
        return DesignProjection(k, r, s, m, p)

    current = project(k0, r0, s0)
    fold_choices = sorted({k0, *folds})
    # With one seed per split, seed noise cannot be told from split noise: no seed lever. Never
    # fewer seeds than were run: the bench found projections to fewer seeds overstate power.
    max_seeds = max_seeds if model.n_seeds >= 2 else s0
    grid = [project(*design) for design in _designs(fold_choices, max_repeats, max_seeds, s0)]
    reaching = [d for d in grid if d.power >= power]
    by_lever = {
        "repeats": _cheapest(d for d in reaching if (d.n_folds, d.n_seeds) == (k0, s0)),
        "seeds": _cheapest(d for d in reaching if (d.n_folds, d.n_repeats) == (k0, r0)),
        "folds": _cheapest(d for d in reaching if (d.n_repeats, d.n_seeds) == (r0, s0)),
    }
    cheapest = _cheapest(reaching)
    best = max(grid, key=lambda d: d.power)
    data_needed = data_design = None
    if model.test_noise is not None and cheapest is None:
        # More data, with whichever design then reaches the power for the fewest trainings.
        for factor in DESIGN_DATA_FACTORS:
            best_there = max(
                (project(k, max_repeats, max_seeds, factor) for k in fold_choices), key=lambda d: d.power
            )
            if best_there.power >= power:
                data_needed = factor
                data_design = _cheapest(
                    d
                    for d in (
                        project(k, r, s, factor)
                        for k, r, s in _designs(fold_choices, max_repeats, max_seeds, s0)
                    )
                    if d.power >= power
                )
                break
    effect = f"a difference of {min_effect:.3g} {metric_label(metric)}"
    if current.power >= power:
        sentence = (
            f"The current design ({current.describe()}) has {_pct(current.power)} power to detect {effect}."
        )
    elif cheapest is not None:
        sentence = (
            f"To detect {effect} with {_pct(power)} power, run {cheapest.describe()} "
            f"(projected power {_pct(cheapest.power)}; the current design has {_pct(current.power)})."
        )
    else:
        more = (
            f"about {data_needed:g}x the data (n ≈ {int(round(data_needed * model.n_samples))}) with "
            f"{data_design.describe()} (projected power {_pct(data_design.power)})"
            if data_needed is not None and data_design is not None
            else f"more than {DESIGN_DATA_FACTORS[-1]:g}x the data"
        )
        sentence = (
            f"No number of repeats, seeds or folds on these {model.n_samples} samples reaches "
            f"{_pct(power)} power to detect {effect} (at most {_pct(best.power)}); "
            f"nothing short of more data does: {more}."
        )
    return DesignAdvice(
        min_effect,
        power,
        alpha,
        method,
        current,
        by_lever,
        cheapest,
        best,
        data_needed,
        data_design,
        sentence,
    )


def detectable_effect(
    model: VarianceModel,
    *,
    power: float = 0.8,
    alpha: float = 0.05,
    method: str = DEFAULT_METHOD,
    n_folds: int | None = None,
    n_repeats: int | None = None,
    n_seeds: int | None = None,
    data_factor: float = 1.0,
) -> float:
    """The smallest true difference a design detects with ``power`` by the verdict's test
    ``method``, projected from the variance model: the run's own design (as in ``model``) unless
    ``n_folds``, ``n_repeats``, ``n_seeds`` or ``data_factor`` say otherwise. inf when no
    difference up to 1 (the whole range of a score in [0, 1]) reaches it; 0 when the model has no
    variance at all."""
    from scipy.optimize import brentq

    k = model.n_folds if n_folds is None else n_folds
    r = model.n_repeats if n_repeats is None else n_repeats
    s = max(1, int(round(model.n_seeds))) if n_seeds is None else n_seeds

    def shortfall(effect):
        return (
            design_power(
                model,
                effect,
                n_folds=k,
                n_repeats=r,
                n_seeds=s,
                data_factor=data_factor,
                alpha=alpha,
                method=method,
            )
            - power
        )

    if shortfall(1.0) < 0:
        return float("inf")
    if shortfall(1e-9) >= 0:  # no variance at all (e.g. two models that agree on every job): any difference
        return 0.0
    return float(brentq(shortfall, 1e-9, 1.0, xtol=1e-6))


def _designs(fold_choices, max_repeats, max_seeds, min_seeds):
    return [
        (k, r, s)
        for k in fold_choices
        for r in range(1, max_repeats + 1)
        for s in range(min_seeds, max_seeds + 1)
    ]


def _cheapest(designs):
    designs = list(designs)
    return min(designs, key=lambda d: (d.trainings, -d.power)) if designs else None


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"
