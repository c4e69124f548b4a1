"""``cvkit.compare``: from a run's stored results to tests, intervals and a verdict per variant.

The verdict rests on fold-level tests of the *training procedure* (corrected t, Bayesian
correlated t). Sample-level tests (McNemar, DeLong, bootstrap over samples) compare two trained
models and ignore seed variance: they are reported beside the verdict, never instead of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from . import stats
from ._json import nan_to_none
from .errors import ConfigError
from .trainers import SELECTION_RULES
from .verdict_text import verdict_paragraph

VERDICTS = stats.VERDICTS


@dataclass(frozen=True)
class SampleTests:
    """Per repeat (first training seed): McNemar and DeLong on that repeat's out-of-fold predictions."""

    repeat: int
    mcnemar: stats.McNemarResult
    delong: stats.DeLongResult


@dataclass(frozen=True)
class Comparison:
    """Every statistic of one variant against the baseline, computed once. ``ttest`` carries the
    interval at ``confidence``, the level of the variant's Holm step (see ``stats.verdicts``)."""

    variant: str
    baseline: str
    metric: str
    diffs: np.ndarray  # per (repeat, fold), seeds averaged: variant - baseline
    baseline_scores: np.ndarray  # same order
    variant_scores: np.ndarray
    ttest: stats.CorrectedTTestResult
    bayes: stats.BayesResult
    prob: stats.ProbOutperformResult
    mde: float  # smallest true difference this design detects with 80% power (projected)
    advice: stats.DesignAdvice  # the design that detects the pre-specified min_effect
    variance_model: stats.VarianceModel  # the variance components the advice projects from
    pvalue_holm: float
    verdict: str
    confidence: float  # of ttest's interval
    family_size: int  # variants sharing the Holm family
    rope: float
    smallest_rope: float  # the narrowest ROPE this design could confirm
    sample_tests: list[SampleTests] = field(default_factory=list)
    sample_pvalue_holm: float = float("nan")  # smallest Holm-adjusted p over McNemar and DeLong
    bootstrap: stats.BootstrapResult | None = None
    diff_components: stats.VarianceComponents | None = None
    sequential: tuple = ()  # a sequential run's looks (stats.SequentialLook); its verdict is the last's
    paragraph: str = ""

    @property
    def wins(self) -> int:
        return int(np.sum(self.diffs > 0))


@dataclass(frozen=True)
class PairwiseComparison:
    """One pair of the run's models (3 or more), corrected t with Holm over every pair."""

    model_a: str
    model_b: str
    ttest: stats.CorrectedTTestResult  # of b - a, interval at ``confidence``
    pvalue_holm: float
    confidence: float
    verdict: str


@dataclass(frozen=True)
class Registration:
    """The pre-registered analysis plan a run was started with, and whether this analysis keeps to
    it: "pre-registered" when its metric, alpha, ROPE, smallest effect and baseline are the plan's,
    "exploratory" (with what differs) otherwise."""

    sha256: str
    plan: dict
    status: str  # "pre-registered" | "exploratory"
    deviations: tuple[str, ...] = ()


@dataclass(frozen=True)
class ComparisonReport:
    metric: str
    alpha: float
    rope: float
    baseline: str
    comparisons: list[Comparison]
    aa: stats.SeedNoiseCheck | None  # baseline's even vs odd seeds (seeds >= 2)
    noise: stats.VarianceComponents | None  # baseline's score: between splits vs seeds
    single_split: tuple[float, float]  # range of the baseline's score over single splits
    selection: list[dict]  # what each checkpoint rule would have given
    n_folds: int
    n_repeats: int
    n_seeds: int
    warnings: list[str] = field(default_factory=list)
    # 3+ models on one data set: every pair by the corrected t with Holm, and the mean rank of each
    # model over the folds as a description only (folds of one data set are not independent blocks).
    pairwise: list[PairwiseComparison] = field(default_factory=list)
    mean_ranks: dict[str, float] = field(default_factory=dict)
    nested: dict = field(default_factory=dict)  # model -> hyper-parameters chosen per outer fold
    holdout: list[dict] = field(default_factory=list)  # per model: hold-out score beside the CV estimate
    registration: Registration | None = None  # the run's pre-registered plan, if it has one
    # Calibration, decision curves, operating points (cvkit.clinical.ClinicalReport); None if not asked.
    clinical: Any = None
    # The class sensitivity, specificity, F1 and the clinical layer are computed for.
    positive: str | None = None


@dataclass(frozen=True)
class MultiRunRanking:
    """The same models on several data sets (one run each): Friedman over the data sets as blocks
    and the Nemenyi critical difference (Demsar 2006)."""

    metric: str
    models: list[str]
    runs: list[str]  # run folders, one per data set (block)
    data_sets: list[str]
    scores: np.ndarray  # (runs, models): each run's mean over folds of the metric
    friedman: stats.FriedmanResult


def check_settings(*, rope: float | None, alpha: float | None, min_effect: float | None = None) -> None:
    """The ROPE (None: the metric's own), the significance level (None: the default) and the
    smallest effect of interest (None: the ROPE), checked before any work (``nan < 0`` is False)."""
    if min_effect is not None and not (math.isfinite(min_effect) and min_effect > 0):
        raise ConfigError(f"--min-effect must be a positive number, got {min_effect}")
    if alpha is not None and not (math.isfinite(alpha) and 0 < alpha < 1):
        raise ConfigError(f"--alpha must lie strictly between 0 and 1, got {alpha}")
    if rope is not None and not (math.isfinite(rope) and rope >= 0):
        raise ConfigError(f"--rope must be a finite number of at least 0, got {rope}")


def compare(
    results,
    *,
    metric: str | None = None,
    rope: float | None = None,
    alpha: float | None = None,
    baseline: str | None = None,
    min_effect: float | None = None,
    n_resamples: int = 10000,
    seed: int = 0,
    nb_thresholds=stats.DEFAULT_NB_THRESHOLDS,
    operating_point: str | None = stats.DEFAULT_OPERATING_POINT,
    calibrate: str = "none",
    clinical: bool = True,
) -> ComparisonReport:
    """Compare every other model of a run with the baseline: the verdict of each, its tests,
    intervals, the design advice and the clinical layer.

    For a run started with a pre-registered plan, ``metric``, ``alpha``, ``rope`` and
    ``min_effect`` default to the plan's, and any other choice makes the analysis exploratory
    (``ComparisonReport.registration`` says so and why).

    Parameters
    ----------
    results : Results
        The run (:func:`cvkit.load` or the return of :func:`cvkit.evaluate`).
    metric : str or None, default=None
        The metric the verdicts rest on (one of ``stats.VERDICT_METRICS``); None: the plan's,
        else AUC.
    rope : float or None, default=None
        Region of practical equivalence, ± this; None: the plan's, else the metric's own
        (``stats.default_rope``: 0.01 for AUC, at least one sample's worth of a counted metric in
        one test fold).
    alpha : float or None, default=None
        Significance level, Holm-adjusted across the variants; None: the plan's, else 0.05.
    baseline : str or None, default=None
        The model the others are compared with; None: the run's baseline.
    min_effect : float or None, default=None
        The smallest difference worth detecting that the design advice plans for, stated in
        advance (never the observed difference); None: the plan's, else the ROPE.
    n_resamples : int, default=10000
        Bootstrap resamples of the per-sample intervals.
    seed : int, default=0
        Seed of the bootstrap.
    nb_thresholds : sequence of float, default=stats.DEFAULT_NB_THRESHOLDS
        The pre-declared risk thresholds of the paired net-benefit differences.
    operating_point : str or None, default=stats.DEFAULT_OPERATING_POINT
        ``sens@spec=0.90``, ``spec@sens=0.90``, ``youden``, ``fixed=0.5`` or None: the rule that
        chooses each job's threshold on its validation predictions.
    calibrate : {"none", "platt", "isotonic"}, default="none"
        Recalibration fitted on each job's validation predictions before the clinical layer.
    clinical : bool, default=True
        Whether to compute the clinical layer (``cvkit.clinical``).

    Returns
    -------
    ComparisonReport
        A frozen report: one ``Comparison`` per variant (verdict, tests, intervals, the verdict
        sentence), the A/A seed check, seed noise, pairwise tests, hold-out scores, the
        registration status and the clinical layer.

    Raises
    ------
    ConfigError
        An unknown metric or baseline, ``rope``, ``alpha`` or ``min_effect`` out of range, bad
        clinical settings, or a run without finished jobs.
    """
    from .clinical import check_clinical_settings, clinical_analysis

    if clinical:  # bad settings fail before any work
        check_clinical_settings(nb_thresholds, operating_point, calibrate)

    registered = getattr(results, "registration", None)
    planned = registered["content"]["analysis"] if registered else {}
    asked = dict(metric=metric, alpha=alpha, rope=rope, min_effect=min_effect, baseline=baseline)
    metric = planned.get("metric", "auc") if metric is None else metric
    alpha = planned.get("alpha", 0.05) if alpha is None else alpha
    rope = planned.get("rope") if rope is None else rope
    min_effect = planned.get("min_effect") if min_effect is None else min_effect
    if metric not in stats.VERDICT_METRICS:
        raise ConfigError(f"--metric {metric!r}: choose one of {', '.join(stats.VERDICT_METRICS)}")
    check_settings(rope=rope, alpha=alpha, min_effect=min_effect)
    baseline = baseline or results.baseline
    if baseline not in results.model_names:
        raise ConfigError(
            f"--baseline {baseline!r} is not a model of this run ({', '.join(results.model_names)})"
        )
    metrics = results.metrics
    if metrics.empty:
        raise ConfigError(f"{results.run_dir}: no finished jobs to compare yet")
    design = results.run["design"]
    n_folds, n_repeats, n_seeds = design["folds"], design["repeats"], design["seeds"]
    n_train, n_test = results.fold_sizes
    positives = np.mean([np.sum(results.labels[s["test"]] == results.positive) for s in results.plan])
    default_rope = stats.default_rope(metric, n_test, float(positives))
    rope = default_rope if rope is None else rope
    # The effect the advice plans for: the ROPE, or the metric's own when the ROPE is 0.
    min_effect = min_effect or rope or default_rope
    context = _Context(
        results, metric, rope, alpha, min_effect, n_train, n_test, n_folds, n_repeats, n_resamples, seed
    )

    pending, ready = [], []
    for variant in results.model_names:
        if variant == baseline:
            continue
        if context.n_paired_folds(baseline, variant, metrics) < 2:
            pending.append(variant)  # an unfinished run: nothing to test yet
        else:
            ready.append(variant)
    paired = [context.paired_scores(metrics, baseline, variant) for variant in ready]
    jobs = [context.paired_jobs(metrics, baseline, variant) for variant in ready]
    decided = stats.verdicts(jobs, alpha=alpha, rope=rope)
    noise = context.seed_noise(metrics, baseline) if n_seeds >= 2 else None
    comparisons = []
    for variant, (a, b), variant_jobs, decision in zip(ready, paired, jobs, decided):
        c = _with_looks(context.compare(baseline, variant, a, b, variant_jobs, decision), results, metric)
        comparisons.append(replace(c, paragraph=verdict_paragraph(c, noise, n_folds, n_repeats)))

    aa = context.seed_check(metrics, baseline)

    base = metrics[(metrics.model == baseline) & (metrics.seed_index == 0)][metric].dropna()
    pairwise, mean_ranks = context.all_pairs(metrics)
    selection = context.selection_analysis(baseline)
    holdout = holdout_scores(results, metric, seed=seed, n_resamples=min(n_resamples, 2000), alpha=alpha)
    draft = ComparisonReport(
        metric=metric,
        alpha=alpha,
        rope=rope,
        baseline=baseline,
        comparisons=comparisons,
        aa=aa,
        noise=noise,
        single_split=(float(base.min()), float(base.max())),
        selection=selection,
        n_folds=n_folds,
        n_repeats=n_repeats,
        n_seeds=n_seeds,
        pairwise=pairwise,
        mean_ranks=mean_ranks,
        nested=nested_choices(results),
        registration=registration_status(registered, asked, default_rope, results.baseline),
        holdout=holdout,
        positive=results.positive_name,
        clinical=clinical_analysis(
            results,
            baseline=baseline,
            nb_thresholds=nb_thresholds,
            operating_point=operating_point,
            calibrate=calibrate,
        )
        if clinical
        else None,
    )
    warnings = [f"{v}: fewer than 2 folds finished for both models; not compared yet" for v in pending]
    return replace(draft, warnings=warnings + _warnings(draft, results, n_test))


# The verdict a sequential run's last look gives (one still running: inconclusive so far).
SEQUENTIAL_VERDICTS = dict(
    better="better",
    worse="worse",
    equivalent="equivalent",
    futile="inconclusive",
    inconclusive="inconclusive",
    continue_="inconclusive",
)


def _with_looks(c: Comparison, results, metric: str) -> Comparison:
    """A sequential run's variant: its verdict is the rule's (decided on the rule's metric), with
    the looks that led to it."""
    sequential = getattr(results, "sequential", None)
    if not sequential or sequential["rule"]["metric"] != metric:
        return c
    looks = tuple(stats.SequentialLook(**look) for look in sequential["looks"].get(c.variant, []))
    if not looks:
        return c
    decision = looks[-1].decision
    return replace(
        c, verdict=SEQUENTIAL_VERDICTS.get(decision, SEQUENTIAL_VERDICTS["continue_"]), sequential=looks
    )


def paired_job_scores(results, variant: str, *, metric: str = "auc", baseline: str | None = None):
    """The verdict's input for one variant: both models' scores per job (repeat, fold, seed) on the
    jobs both finished, with each job's test-sample variance of the difference
    (``stats.PairedJobScores``), as ``compare`` builds it."""
    n_train, n_test = results.fold_sizes
    design = results.run["design"]
    context = _Context(
        results, metric, None, 0.05, None, n_train, n_test, design["folds"], design["repeats"], 0, 0
    )
    return context.paired_jobs(results.metrics, baseline or results.baseline, variant)


def registration_status(
    registered, asked: dict, default_rope: float, run_baseline: str
) -> Registration | None:
    """Whether this analysis keeps to the run's pre-registered plan: every setting asked for that
    differs from the plan's makes it exploratory."""
    if not registered:
        return None
    planned = {**registered["content"]["analysis"], "baseline": run_baseline}
    planned.setdefault("rope", default_rope)
    deviations = tuple(
        f"{key.replace('_', ' ')} {value:g} (plan: {planned[key]:g})"
        if isinstance(value, float)
        else f"{key.replace('_', ' ')} {value} (plan: {planned[key]})"
        for key, value in asked.items()
        if value is not None and value != planned[key]
    )
    status = "exploratory" if deviations else "pre-registered"
    return Registration(registered["sha256"], registered["content"], status, deviations)


def compare_runs(runs, *, metric: str = "auc") -> MultiRunRanking:
    """Friedman/Nemenyi over two or more runs of the same models, each on a different data set:
    the data sets are the blocks. Each run contributes its models' mean score over folds.

    Parameters
    ----------
    runs : sequence of Results
        Two or more runs of the same models, one per data set.
    metric : str, default="auc"
        The metric the models are ranked by (one of ``stats.VERDICT_METRICS``).

    Returns
    -------
    MultiRunRanking
        The scores per run and model, the Friedman test and the Nemenyi critical difference.

    Raises
    ------
    ConfigError
        Fewer than two runs, runs of different models, or an unknown metric.
    """
    if metric not in stats.VERDICT_METRICS:
        raise ConfigError(f"--metric {metric!r}: choose one of {', '.join(stats.VERDICT_METRICS)}")
    if len(runs) < 2:
        raise ConfigError("a ranking over data sets needs two or more runs (one per data set)")
    first = runs[0]
    models = list(first.model_names)
    seen = {}
    for results in runs:
        if sorted(results.model_names) != sorted(models):
            raise ConfigError(
                f"{results.run_dir}: its models ({', '.join(results.model_names)}) differ from those of "
                f"{first.run_dir} ({', '.join(models)}); a ranking over data sets needs the same models "
                "in every run"
            )
        fingerprint = results.run["data"].get("fingerprint") or results.run["data"]["name"]
        if fingerprint in seen:
            raise ConfigError(
                f"{results.run_dir} and {seen[fingerprint]} are runs on the same data set; the blocks of a "
                "ranking must be different data sets (repeats of one data set are not independent)"
            )
        seen[fingerprint] = results.run_dir
    if len(models) < 3:
        raise ConfigError(
            f"these runs hold {len(models)} models; Friedman/Nemenyi ranks 3 to 10 models "
            "(for two, read each run's own verdict)"
        )
    if len(models) > 10:
        raise ConfigError(f"these runs hold {len(models)} models; the Nemenyi table covers 3 to 10")
    scores = np.array(
        [
            [
                results.metrics[results.metrics.model == m].groupby(["repeat", "fold"])[metric].mean().mean()
                for m in models
            ]
            for results in runs
        ]
    )
    if np.isnan(scores).any():
        raise ConfigError(f"some model has no finished {metric} in one of the runs; finish the runs first")
    return MultiRunRanking(
        metric=metric,
        models=models,
        runs=[str(r.run_dir) for r in runs],
        data_sets=[r.run["data"]["name"] for r in runs],
        scores=scores,
        friedman=stats.friedman(scores),
    )


class _Context:
    """The shared settings of one comparison report, and the steps that use them."""

    def __init__(
        self, results, metric, rope, alpha, min_effect, n_train, n_test, n_folds, n_repeats, n_resamples, seed
    ):
        self.results, self.metric, self.rope, self.alpha = results, metric, rope, alpha
        self.min_effect = min_effect  # what the design advice plans for
        self.n_train, self.n_test = n_train, n_test
        self.n_folds, self.n_repeats = n_folds, n_repeats
        self.n_resamples, self.seed = n_resamples, seed

    def paired_scores(self, metrics, baseline, variant):
        """Both models' per-fold scores (seeds averaged) on the folds both finished."""
        a, b = (self._per_fold(metrics, m) for m in (baseline, variant))
        both = a.index.intersection(b.index)
        return a.loc[both].to_numpy(), b.loc[both].to_numpy()

    def paired_jobs(self, metrics, baseline, variant) -> stats.PairedJobScores:
        """Both models' scores per job (repeat, fold, seed) on the jobs both finished, with each
        job's test-sample variance of the difference when the metric has one."""
        a, b = self._per_job(metrics, baseline), self._per_job(metrics, variant)
        both = a.index.intersection(b.index).sort_values()
        keys = both.to_frame(index=False)
        return stats.PairedJobScores(
            repeat=keys["repeat"].to_numpy(),
            fold=keys["fold"].to_numpy(),
            seed=keys["seed_index"].to_numpy(),
            baseline=a.loc[both].to_numpy(),
            variant=b.loc[both].to_numpy(),
            n_train=self.n_train,
            n_test=self.n_test,
            diff_variance=self._job_variances(baseline, variant, both),
        )

    def _job_variances(self, baseline, variant, jobs) -> np.ndarray | None:
        """Per job, the variance of its difference over test folds of that size for the two fixed
        trained models (DeLong's for AUC, per-sample for the proportions): the sampling term of
        the verdict's test. None for a metric without one (F1; balanced accuracy of 3 or more
        classes), or when a job lacks predictions of both models on the same samples."""
        results = self.results
        binary_only = self.metric == "balanced_accuracy" and len(results.class_names) > 2  # mean of k recalls
        if self.metric not in stats.SAMPLING_VARIANCE_METRICS or binary_only:
            return None
        columns = [f"prob_{name}" for name in results.class_names]
        predictions = results.predictions
        rows = predictions[predictions.model.isin([baseline, variant])]
        groups = rows.sort_values("sample_idx").groupby(["repeat", "fold", "seed_index"])
        variances = []
        for job in jobs:
            try:
                job_rows = groups.get_group(job)
            except KeyError:
                return None
            a, b = (job_rows[job_rows.model == model] for model in (baseline, variant))
            if not np.array_equal(a["sample_idx"].to_numpy(), b["sample_idx"].to_numpy()):
                return None
            labels = results.labels[a["sample_idx"].to_numpy()]
            probs_a, probs_b = a[columns].to_numpy(), b[columns].to_numpy()
            predicted_a = stats.predict_classes(probs_a, results.positive)
            predicted_b = stats.predict_classes(probs_b, results.positive)
            variance = stats.difference_variance(
                self.metric,
                labels == results.positive,
                score_a=probs_a[:, results.positive],
                score_b=probs_b[:, results.positive],
                correct_a=predicted_a == labels,
                correct_b=predicted_b == labels,
                said_positive_a=predicted_a == results.positive,
                said_positive_b=predicted_b == results.positive,
            )
            if variance is None or not np.isfinite(variance):
                return None
            variances.append(variance)
        return np.asarray(variances)

    def compare(
        self, baseline, variant, a, b, jobs: stats.PairedJobScores, decision: stats.Verdict
    ) -> Comparison:
        sample_tests, bootstrap = self._sample_tests(baseline, variant)
        sample_p = [t.delong.pvalue for t in sample_tests] + [t.mcnemar.pvalue for t in sample_tests]
        components = None
        if len(np.unique(jobs.seed)) >= 2:
            components = stats.variance_components(jobs.diffs, jobs.repeat * 10_000 + jobs.fold)
        return self._comparison(
            baseline,
            variant,
            a,
            b,
            jobs,
            decision,
            prob=stats.prob_outperform(jobs.baseline, jobs.variant),
            sample_tests=sample_tests,
            # Holm over the 2r McNemar and DeLong p-values: the warning's error rate stays at alpha
            sample_pvalue_holm=float(min(stats.holm(sample_p))) if sample_p else float("nan"),
            bootstrap=bootstrap,
            diff_components=components,
        )

    def n_paired_folds(self, baseline, variant, metrics) -> int:
        return len(
            self._per_fold(metrics, baseline).index.intersection(self._per_fold(metrics, variant).index)
        )

    def seed_check(self, metrics, model) -> stats.SeedNoiseCheck | None:
        """The A/A check: ``model``'s even-numbered seeds against its odd-numbered ones, split by
        split (``stats.seed_noise_check``); None with fewer than 2 splits of 2 or more seeds."""
        rows = metrics[metrics.model == model].dropna(subset=[self.metric])
        if (rows.groupby(["repeat", "fold"]).size() >= 2).sum() < 2:
            return None
        return stats.seed_noise_check(
            rows["repeat"], rows["fold"], rows["seed_index"], rows[self.metric], alpha=self.alpha
        )

    def _comparison(self, baseline, variant, a, b, jobs, decision: stats.Verdict, **extra) -> Comparison:
        diffs = b - a
        # The design's power, and the advice, from the variance components of this run under the
        # test that decided (the bench's check of these projections: benchmarks/calibration.py).
        model = stats.estimate_variance_model(jobs)
        method = decision.ttest.method
        mde = stats.detectable_effect(model, alpha=self.alpha, method=method)
        advice = stats.advise_design(
            model, self.min_effect, metric=self.metric, alpha=self.alpha, method=method
        )
        return Comparison(
            variant=variant,
            baseline=baseline,
            metric=self.metric,
            diffs=diffs,
            baseline_scores=a,
            variant_scores=b,
            ttest=decision.ttest,
            bayes=decision.bayes,
            mde=mde,
            advice=advice,
            variance_model=model,
            pvalue_holm=decision.pvalue_holm,
            verdict=decision.verdict,
            confidence=decision.confidence,
            family_size=decision.family_size,
            rope=decision.rope,
            smallest_rope=decision.smallest_rope,
            **extra,
        )

    def all_pairs(self, metrics) -> tuple[list[PairwiseComparison], dict[str, float]]:
        """3+ models on one data set: every pair by the corrected t with Holm over all pairs, and
        each model's mean rank over the folds (a description: the folds are not independent)."""
        models = self.results.model_names
        if len(models) < 3:
            return [], {}
        table = (
            metrics.groupby(["repeat", "fold", "model"])[self.metric]
            .mean()
            .unstack("model")
            .reindex(columns=models)
            .dropna()
        )
        if len(table) < 2:
            return [], {}
        pairs = [(i, j) for i in range(len(models)) for j in range(i + 1, len(models))]
        scores = table.to_numpy()
        jobs = [self.paired_jobs(metrics, models[i], models[j]) for i, j in pairs]
        decided = stats.verdicts(jobs, alpha=self.alpha, rope=self.rope)
        pairwise = [
            PairwiseComparison(models[i], models[j], d.ttest, d.pvalue_holm, d.confidence, d.verdict)
            for (i, j), d in zip(pairs, decided)
        ]
        from scipy.stats import rankdata

        ranks = rankdata(-scores, axis=1).mean(axis=0)
        return pairwise, {m: float(r) for m, r in zip(models, ranks)}

    def _per_fold(self, metrics, model):
        rows = metrics[metrics.model == model]
        return rows.groupby(["repeat", "fold"])[self.metric].mean().dropna()

    def _per_job(self, metrics, model):
        rows = metrics[metrics.model == model]
        return rows.set_index(["repeat", "fold", "seed_index"])[self.metric].dropna()

    def _sample_tests(self, baseline, variant):
        """McNemar and DeLong per repeat, and the paired bootstrap over samples, all on the
        out-of-fold predictions of the first training seed. Predicted classes follow the one rule
        of every class-based metric (``stats.predict_classes``)."""
        results = self.results
        predictions = results.predictions
        columns = [f"prob_{name}" for name in results.class_names]
        tables = {}
        for model in (baseline, variant):
            rows = predictions[(predictions.model == model) & (predictions.seed_index == 0)]
            tables[model] = [rows.pivot(index="repeat", columns="sample_idx", values=c) for c in columns]
        repeats = tables[baseline][0].index.intersection(tables[variant][0].index)
        a = [t.loc[repeats] for t in tables[baseline]]
        b = [t.loc[repeats] for t in tables[variant]]
        if not len(repeats):
            return [], None
        complete = a[0].columns[a[0].notna().all() & b[0].notna().all()]
        if len(complete) == 0:
            return [], None
        labels = results.labels[np.asarray(complete)]
        is_positive = labels == results.positive
        probs_a = np.stack([t[complete].to_numpy() for t in a], axis=-1)  # (repeats, n, classes)
        probs_b = np.stack([t[complete].to_numpy() for t in b], axis=-1)
        predicted_a = stats.predict_classes(probs_a, results.positive)
        predicted_b = stats.predict_classes(probs_b, results.positive)
        score_a, score_b = probs_a[..., results.positive], probs_b[..., results.positive]
        tests = [
            SampleTests(
                int(repeat),
                stats.mcnemar(labels, predicted_a[i], predicted_b[i]),
                stats.delong(is_positive, score_a[i], score_b[i]),
            )
            for i, repeat in enumerate(repeats)
        ]
        bootstrap = stats.bootstrap_diff(
            is_positive,
            score_a,
            score_b,
            metric=self.metric,
            n_resamples=self.n_resamples,
            seed=self.seed,
            labels=labels,
            predicted=(predicted_a, predicted_b),
        )
        return tests, bootstrap

    def seed_noise(self, metrics, model) -> stats.VarianceComponents | None:
        rows = metrics[metrics.model == model].dropna(subset=[self.metric])
        counts = rows.groupby(["repeat", "fold"]).size()
        if counts.empty or counts.max() < 2:
            return None
        complete = counts[counts == counts.max()].index
        rows = rows.set_index(["repeat", "fold"]).loc[complete].reset_index()
        return stats.variance_components(rows[self.metric], rows["repeat"] * 10_000 + rows["fold"])

    def selection_analysis(self, baseline) -> list[dict]:
        """What each checkpoint-selection rule would have given on the outer test folds (the 95%
        corrected t per variant, unadjusted: a sensitivity analysis, not a verdict)."""
        rows = []
        for rule in SELECTION_RULES:
            if rule not in self.results.rules:
                continue
            metrics = self.results.rule_metrics(rule)
            means = metrics.groupby("model")[self.metric].mean()
            entry = dict(rule=rule, means={m: nan_to_none(v) for m, v in means.items()}, comparisons={})
            a = self._per_fold(metrics, baseline)
            for variant in self.results.model_names:
                if variant == baseline:
                    continue
                b = self._per_fold(metrics, variant)
                both = a.index.intersection(b.index)
                if len(both) < 2:
                    continue
                t = stats.corrected_ttest(b.loc[both] - a.loc[both], self.n_train, self.n_test)
                entry["comparisons"][variant] = dict(mean=t.mean, low=t.low, high=t.high, pvalue=t.pvalue)
            rows.append(entry)
        return rows


def cv_interval(results, model: str, metric: str, *, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean over folds of a model's metric (seeds averaged) and its CI, widened for the overlap of
    training sets between folds (the corrected resampled t). The interval is built on the logit
    scale (delta method) and mapped back, so it stays inside [0, 1]."""
    mean, se, df = _cv_mean_se(results, model, metric)
    if np.isnan(se):
        return mean, float("nan"), float("nan")
    low, high = stats.bounded_interval(mean, se, df, confidence)
    return mean, low, high


def _cv_mean_se(results, model, metric) -> tuple[float, float, float]:
    rows = results.metrics[results.metrics.model == model]
    scores = rows.groupby(["repeat", "fold"])[metric].mean().dropna().to_numpy()
    if len(scores) < 2:
        return (float(scores[0]) if len(scores) else float("nan")), float("nan"), float("nan")
    t = stats.corrected_ttest(scores, *results.fold_sizes)
    return t.mean, t.se, t.df


def holdout_scores(
    results, metric: str, *, seed: int = 0, n_resamples: int = 2000, alpha: float = 0.05
) -> list[dict]:
    """Per model, on the hold-out set that no cross-validation saw: the score of the fold models'
    averaged probabilities with a stratified percentile bootstrap CI over hold-out samples, the mean
    score of the single fold models, and the gap to the cross-validation estimate with a test of
    it that counts both estimates' sampling error (logit scale; Holm across the models)."""
    if "holdout" not in results.rules or metric not in stats.BOOTSTRAP_METRICS:
        return []
    predictions = results.rule_predictions("holdout")
    job_metrics = results.rule_metrics("holdout")
    columns = [f"prob_{name}" for name in results.class_names]
    out = []
    for model in results.model_names:
        rows = predictions[predictions.model == model]
        if rows.empty:
            continue
        tables = [
            rows.pivot_table(index=["repeat", "fold", "seed_index"], columns="sample_idx", values=c)
            for c in columns
        ]
        labels = results.labels[tables[0].columns.to_numpy()]
        is_positive = labels == results.positive
        if is_positive.all() or not is_positive.any():
            continue  # a hold-out set of one class has no AUC or balanced score
        probs = np.stack([t.to_numpy().mean(axis=0) for t in tables], axis=-1)  # (n, classes)
        averaged = stats.bootstrap_score(
            is_positive,
            probs[:, results.positive],
            metric=metric,
            n_resamples=n_resamples,
            seed=seed,
            labels=labels,
            predicted=stats.predict_classes(probs, results.positive),
        )
        per_job = job_metrics[job_metrics.model == model][metric].to_numpy()
        cv_mean, cv_se, cv_df = _cv_mean_se(results, model, metric)
        cv_low, cv_high = (
            (float("nan"), float("nan")) if np.isnan(cv_se) else stats.bounded_interval(cv_mean, cv_se, cv_df)
        )
        gap_p = holdout_gap_pvalue(averaged.estimate, averaged.se, cv_mean, cv_se, cv_df)
        out.append(
            dict(
                model=model,
                n=int(len(labels)),
                cv_duplicates=(results.run.get("holdout") or {}).get("cv_duplicates"),  # leaked copies
                score=averaged.estimate,
                low=averaged.low,
                high=averaged.high,
                se=averaged.se,
                fold_model_mean=float(np.mean(per_job)),
                fold_model_sd=float(np.std(per_job, ddof=1)) if len(per_job) > 1 else float("nan"),
                cv_mean=cv_mean,
                cv_low=cv_low,
                cv_high=cv_high,
                cv_se=cv_se,
                gap=averaged.estimate - cv_mean,
                gap_pvalue=gap_p,
            )
        )
    tested = [h for h in out if not np.isnan(h["gap_pvalue"])]
    for h, p in zip(tested, stats.holm([h["gap_pvalue"] for h in tested])):
        h["gap_pvalue_holm"] = float(p)
    for h in out:
        h.setdefault("gap_pvalue_holm", float("nan"))
    return out


def holdout_gap_pvalue(score: float, score_se: float, cv_mean: float, cv_se: float, cv_df: float) -> float:
    """Two-sided p-value of "the hold-out score and the cross-validation estimate differ", counting
    both estimates' sampling error: the gap on the logit scale over sqrt(se_h^2 + se_cv^2) (delta
    method), against t with the CV estimate's degrees of freedom. NaN at a score of 0 or 1."""
    from scipy import stats as sps
    from scipy.special import logit

    if not (0 < score < 1 and 0 < cv_mean < 1) or np.isnan(cv_se) or np.isnan(score_se):
        return float("nan")
    gap = logit(score) - logit(cv_mean)
    se = np.hypot(score_se / (score * (1 - score)), cv_se / (cv_mean * (1 - cv_mean)))
    if se == 0:
        return float(gap == 0)
    return float(2 * sps.t.sf(abs(gap) / se, cv_df))


def nested_choices(results) -> dict:
    """Per model searched with --nested: the hyper-parameters chosen in each outer fold, the most
    frequent choice and its share (1.0 = the same choice everywhere: a stable search)."""
    import json
    from collections import Counter

    out = {}
    for job in results.jobs:
        info = json.loads(job["info"]) if job.get("info") else None
        if not info or "choice" not in info:
            continue
        entry = out.setdefault(job["model"], dict(choices=[], inner_folds=info.get("inner_folds")))
        entry["choices"].append(
            dict(repeat=job["repeat"], fold=job["fold"], seed_index=job["seed_index"], params=info["choice"])
        )
    for entry in out.values():
        counts = Counter(json.dumps(c["params"], sort_keys=True) for c in entry["choices"])
        modal, n = counts.most_common(1)[0]
        entry.update(most_common=json.loads(modal), stability=n / len(entry["choices"]))
    return out


def _warnings(report, results, n_test) -> list[str]:
    """Warnings whose error rate is controlled at the report's alpha (Holm within each family)."""
    warnings = []
    if n_test < 50:
        warnings.append(f"test folds hold only {n_test:.0f} samples: single-fold scores are very noisy")
    counts = results.run["data"]["class_counts"]
    if min(counts.values()) / max(sum(counts.values()), 1) < 0.2:
        warnings.append("classes are imbalanced: read balanced accuracy and AUC rather than accuracy")
    fallback = _checkpoint_fallbacks(results)
    if fallback:
        rule, n, total = fallback
        warnings.append(
            f"checkpoint by {rule}: in {n} of {total} jobs the validation part lacked a class, so "
            f"{rule} was undefined and the last epoch's model was used instead"
        )
    for c in report.comparisons:
        # Holm over the 2r McNemar and DeLong p-values: the smallest raw p of 2r would fire far
        # more often than alpha when the two models are alike.
        if c.sample_tests and c.verdict == "inconclusive":
            sample_p = [t.delong.pvalue for t in c.sample_tests] + [t.mcnemar.pvalue for t in c.sample_tests]
            if min(stats.holm(sample_p)) < report.alpha:
                warnings.append(
                    f"{c.variant}: a sample-level test is significant (Holm over {len(sample_p)} McNemar and "
                    "DeLong tests) but the fold-level test is not; sample-level tests ignore seed variance "
                    "(two seeds of one model often differ)"
                )
    for entry in report.selection:
        for variant, t in entry["comparisons"].items():
            main = next((c for c in report.comparisons if c.variant == variant), None)
            if (
                main is not None
                and np.sign(t["mean"]) != np.sign(main.ttest.mean)
                and abs(t["mean"]) > report.rope
            ):
                warnings.append(
                    f"{variant}: checkpoint rule {entry['rule']} gives Δ {t['mean']:+.3f}, the other "
                    f"sign than the selected rule: the conclusion depends on the selection rule"
                )
    for h in report.holdout:
        if h.get("gap_pvalue_holm", float("nan")) < report.alpha:
            warnings.append(
                f"{h['model']}: the hold-out score {h['score']:.3f} differs from the cross-validation "
                f"estimate {h['cv_mean']:.3f} by more than both estimates' sampling error (p = "
                f"{h['gap_pvalue_holm']:.2g}, Holm across models): the hold-out set may differ from the rest"
            )
    if report.aa is not None and report.aa.differs:
        warnings.append(
            f"the seed-noise check finds the baseline's even and odd seeds different (p = {report.aa.p:.2g}; "
            f"by chance in {report.alpha:.0%} of runs): seeds may not be exchangeable here (a seed-dependent "
            "bug or set-up), so read every verdict of this run with care"
        )
    return warnings


def _checkpoint_fallbacks(results) -> tuple[str, int, int] | None:
    """(selected rule, jobs in which it fell back to the last epoch, finished jobs), or None."""
    import json

    rule = (results.run.get("config") or {}).get("select")
    done = [job for job in results.jobs if job["status"] == "done"]
    infos = [json.loads(job["info"]) if job.get("info") else None for job in done]
    fell = [info for info in infos if info and rule in info.get("checkpoint_fallback", {})]
    return (rule, len(fell), len(done)) if fell else None
