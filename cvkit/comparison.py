"""``cvkit.compare``: from a run's stored results to tests, intervals and a verdict per variant.

The verdict rests on fold-level tests of the *training procedure* (corrected t, Bayesian
correlated t). Sample-level tests (McNemar, DeLong, bootstrap over samples) compare two trained
models and ignore seed variance: they are reported beside the verdict, never instead of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import stats
from .errors import ConfigError

VERDICTS = ("better", "worse", "equivalent", "inconclusive")
SELECTION_RULES = ("val_auc", "val_loss", "val_acc", "last")


@dataclass
class SampleTests:
    """Per repeat (first training seed): McNemar and DeLong on that repeat's out-of-fold predictions."""

    repeat: int
    mcnemar: stats.McNemarResult
    delong: stats.DeLongResult


@dataclass
class Comparison:
    variant: str
    baseline: str
    metric: str
    diffs: np.ndarray  # per (repeat, fold), seeds averaged: variant - baseline
    baseline_scores: np.ndarray  # same order
    variant_scores: np.ndarray
    ttest: stats.CorrectedTTestResult
    bayes: stats.BayesResult
    prob: stats.ProbOutperformResult
    mde: stats.DetectableEffect
    design: list[stats.DesignOption]
    sample_tests: list[SampleTests] = field(default_factory=list)
    bootstrap: stats.BootstrapResult | None = None
    pvalue_holm: float = float("nan")
    verdict: str = "inconclusive"
    paragraph: str = ""
    diff_components: stats.VarianceComponents | None = None

    @property
    def wins(self) -> int:
        return int(np.sum(self.diffs > 0))


@dataclass
class ComparisonReport:
    metric: str
    alpha: float
    rope: float
    baseline: str
    comparisons: list[Comparison]
    aa: Comparison | None  # baseline vs itself under other seeds (seeds >= 2)
    noise: stats.VarianceComponents | None  # baseline's score: between splits vs seeds
    single_split: tuple[float, float]  # range of the baseline's score over single splits
    selection: list[dict]  # what each checkpoint rule would have given
    n_folds: int
    n_repeats: int
    n_seeds: int
    warnings: list[str] = field(default_factory=list)
    ranking: tuple[list[str], stats.FriedmanResult] | None = None  # 3+ models, over repeats
    nested: dict = field(default_factory=dict)  # model -> hyper-parameters chosen per outer fold
    holdout: list[dict] = field(default_factory=list)  # per model: hold-out score beside the CV estimate

    def to_json(self) -> dict:
        return dict(
            metric=self.metric,
            alpha=self.alpha,
            rope=self.rope,
            baseline=self.baseline,
            design=dict(folds=self.n_folds, repeats=self.n_repeats, seeds=self.n_seeds),
            single_split_range=list(self.single_split),
            seed_noise=None if self.noise is None else _components_json(self.noise),
            comparisons={c.variant: _comparison_json(c) for c in self.comparisons},
            aa_check=None if self.aa is None else _comparison_json(self.aa),
            checkpoint_selection=self.selection,
            warnings=self.warnings,
            friedman=None
            if self.ranking is None
            else dict(
                models=self.ranking[0],
                statistic=self.ranking[1].statistic,
                pvalue=self.ranking[1].pvalue,
                mean_ranks=self.ranking[1].mean_ranks.tolist(),
                critical_difference=self.ranking[1].critical_difference,
                n_blocks=self.ranking[1].n_blocks,
            ),
            nested=self.nested,
            holdout=self.holdout,
        )


def check_settings(*, rope: float, alpha: float) -> None:
    """The ROPE and the significance level, checked before any work (``nan < 0`` is False)."""
    if not (math.isfinite(alpha) and 0 < alpha < 1):
        raise ConfigError(f"--alpha must lie strictly between 0 and 1, got {alpha}")
    if not (math.isfinite(rope) and rope >= 0):
        raise ConfigError(f"--rope must be a finite number of at least 0, got {rope}")


def compare(
    results,
    *,
    metric: str = "auc",
    rope: float = 0.01,
    alpha: float = 0.05,
    baseline: str | None = None,
    n_resamples: int = 10000,
    seed: int = 0,
) -> ComparisonReport:
    """Compare every other model of ``results`` with ``baseline`` (default: the run's baseline)."""
    if metric not in stats.VERDICT_METRICS:
        raise ConfigError(f"--metric {metric!r}: choose one of {', '.join(stats.VERDICT_METRICS)}")
    check_settings(rope=rope, alpha=alpha)
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
    context = _Context(results, metric, rope, alpha, n_train, n_test, n_folds, n_repeats, n_resamples, seed)

    pending = []
    comparisons = []
    for variant in results.model_names:
        if variant == baseline:
            continue
        if context.n_paired_folds(baseline, variant, metrics) < 2:
            pending.append(variant)  # an unfinished run: nothing to test yet
            continue
        comparisons.append(context.compare(baseline, variant, metrics))
    adjusted = stats.holm([c.ttest.pvalue for c in comparisons])
    for c, p in zip(comparisons, adjusted):
        c.pvalue_holm = float(p)
        c.verdict = context.verdict(c.ttest, c.bayes, p)
    noise = context.seed_noise(metrics, baseline) if n_seeds >= 2 else None
    for c in comparisons:
        c.paragraph = context.paragraph(c, noise)

    aa = context.self_comparison(baseline, metrics) if n_seeds >= 2 else None
    if aa is not None:
        aa.verdict = context.verdict(aa.ttest, aa.bayes, aa.ttest.pvalue)
        aa.paragraph = context.paragraph(aa, noise)

    base = metrics[(metrics.model == baseline) & (metrics.seed_index == 0)][metric].dropna()
    report = ComparisonReport(
        metric=metric,
        alpha=alpha,
        rope=rope,
        baseline=baseline,
        comparisons=comparisons,
        aa=aa,
        noise=noise,
        single_split=(float(base.min()), float(base.max())),
        selection=context.selection_analysis(baseline),
        n_folds=n_folds,
        n_repeats=n_repeats,
        n_seeds=n_seeds,
    )
    report.ranking = _ranking(metrics, results.model_names, metric)
    report.nested = nested_choices(results)
    report.holdout = holdout_scores(results, metric, seed=seed, n_resamples=min(n_resamples, 2000))
    report.warnings = [f"{v}: fewer than 2 folds finished for both models; not compared yet" for v in pending]
    report.warnings += _warnings(report, results, n_test)
    return report


class _Context:
    """The shared settings of one comparison report, and the steps that use them."""

    def __init__(self, results, metric, rope, alpha, n_train, n_test, n_folds, n_repeats, n_resamples, seed):
        self.results, self.metric, self.rope, self.alpha = results, metric, rope, alpha
        self.n_train, self.n_test = n_train, n_test
        self.n_folds, self.n_repeats = n_folds, n_repeats
        self.n_resamples, self.seed = n_resamples, seed

    def compare(self, baseline, variant, metrics) -> Comparison:
        a, b = (self._per_fold(metrics, m) for m in (baseline, variant))
        both = a.index.intersection(b.index)
        a, b = a.loc[both].to_numpy(), b.loc[both].to_numpy()
        comparison = self._fold_tests(baseline, variant, a, b)
        jobs_a = self._per_job(metrics, baseline)
        jobs_b = self._per_job(metrics, variant)
        paired = jobs_a.index.intersection(jobs_b.index)
        comparison.prob = stats.prob_outperform(jobs_a.loc[paired], jobs_b.loc[paired], seed=self.seed)
        comparison.sample_tests, comparison.bootstrap = self._sample_tests(baseline, variant)
        seeds = metrics[metrics.model == variant]["seed_index"].nunique()
        if seeds >= 2:
            diff = (jobs_b.loc[paired] - jobs_a.loc[paired]).reset_index()
            split = diff["repeat"] * 10_000 + diff["fold"]
            comparison.diff_components = stats.variance_components(diff[self.metric], split)
        return comparison

    def n_paired_folds(self, baseline, variant, metrics) -> int:
        return len(
            self._per_fold(metrics, baseline).index.intersection(self._per_fold(metrics, variant).index)
        )

    def self_comparison(self, baseline, metrics) -> Comparison:
        """The A/A check: the baseline's even-numbered seeds against its odd-numbered ones."""
        rows = metrics[metrics.model == baseline].copy()
        rows["half"] = rows["seed_index"] % 2
        per_fold = rows.groupby(["half", "repeat", "fold"])[self.metric].mean().unstack("half").dropna()
        if len(per_fold) < 2 or per_fold.shape[1] < 2:
            return None
        a, b = per_fold[0].to_numpy(), per_fold[1].to_numpy()
        name = f"{baseline} (odd seeds)"
        comparison = self._fold_tests(f"{baseline} (even seeds)", name, a, b)
        comparison.prob = stats.prob_outperform(a, b, seed=self.seed)
        return comparison

    def _fold_tests(self, baseline, variant, a, b) -> Comparison:
        diffs = b - a
        ttest = stats.corrected_ttest(diffs, self.n_train, self.n_test)
        rho = self.n_test / (self.n_train + self.n_test)
        bayes = stats.bayes_correlated_ttest(diffs, rho=rho, rope=self.rope)
        sd = float(np.std(diffs, ddof=1))
        mde = stats.minimal_detectable_effect(
            self.n_folds, self.n_repeats, sd, test_train_ratio=self.n_test / self.n_train
        )
        target = max(abs(ttest.mean), self.rope)
        design = stats.design_needed(target, sd) if sd > 0 and target > 0 else []
        return Comparison(
            variant, baseline, self.metric, diffs, a, b, ttest, bayes, prob=None, mde=mde, design=design
        )

    def verdict(self, ttest, bayes, pvalue) -> str:
        if pvalue < self.alpha and (ttest.low > 0 or ttest.high < 0):
            return "better" if ttest.mean > 0 else "worse"
        if bayes.p_equivalent >= 0.95:
            return "equivalent"
        return "inconclusive"

    def _per_fold(self, metrics, model):
        rows = metrics[metrics.model == model]
        return rows.groupby(["repeat", "fold"])[self.metric].mean().dropna()

    def _per_job(self, metrics, model):
        rows = metrics[metrics.model == model]
        return rows.set_index(["repeat", "fold", "seed_index"])[self.metric].dropna()

    def _sample_tests(self, baseline, variant):
        """McNemar and DeLong per repeat, and the paired bootstrap over samples, all on the
        out-of-fold predictions of the first training seed."""
        results = self.results
        predictions = results.predictions
        positive_column = f"prob_{results.positive_name}"
        tables = {}
        for model in (baseline, variant):
            rows = predictions[(predictions.model == model) & (predictions.seed_index == 0)]
            tables[model] = rows.pivot(index="repeat", columns="sample_idx", values=positive_column)
        repeats = tables[baseline].index.intersection(tables[variant].index)
        a = tables[baseline].loc[repeats]
        b = tables[variant].loc[repeats]
        complete = a.columns[a.notna().all() & b.notna().all()] if len(repeats) else []
        if len(complete) == 0:
            return [], None
        labels = results.labels[np.asarray(complete)]
        is_positive = labels == results.positive
        a, b = a[complete].to_numpy(), b[complete].to_numpy()
        tests = []
        for repeat, score_a, score_b in zip(repeats, a, b):
            predicted_a = self._predicted(score_a, labels)
            predicted_b = self._predicted(score_b, labels)
            tests.append(
                SampleTests(
                    int(repeat),
                    stats.mcnemar(labels, predicted_a, predicted_b),
                    stats.delong(is_positive, score_a, score_b),
                )
            )
        bootstrap = stats.bootstrap_diff(
            is_positive, a, b, metric=self.metric, n_resamples=self.n_resamples, seed=self.seed
        )
        return tests, bootstrap

    def _predicted(self, score, labels):
        """Predicted labels from the positive-class probability (>= 0.5 means positive). With more
        than two classes this scores positive-vs-rest: 'not positive' is right for any other class."""
        positive = self.results.positive
        said_positive = score >= 0.5
        if len(self.results.class_names) == 2:
            return np.where(said_positive, positive, 1 - positive)
        return np.where(said_positive, positive, np.where(labels == positive, -1, labels))

    def seed_noise(self, metrics, model) -> stats.VarianceComponents | None:
        rows = metrics[metrics.model == model].dropna(subset=[self.metric])
        counts = rows.groupby(["repeat", "fold"]).size()
        if counts.empty or counts.max() < 2:
            return None
        complete = counts[counts == counts.max()].index
        rows = rows.set_index(["repeat", "fold"]).loc[complete].reset_index()
        return stats.variance_components(rows[self.metric], rows["repeat"] * 10_000 + rows["fold"])

    def selection_analysis(self, baseline) -> list[dict]:
        """What each checkpoint-selection rule would have given on the outer test folds."""
        rows = []
        for rule in SELECTION_RULES:
            if rule not in self.results.rules:
                continue
            metrics = self.results.rule_metrics(rule)
            means = metrics.groupby("model")[self.metric].mean()
            entry = dict(rule=rule, means={m: _num(v) for m, v in means.items()}, comparisons={})
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

    def paragraph(self, c: Comparison, noise) -> str:
        name = self.metric.upper() if self.metric == "auc" else self.metric.replace("_", " ")
        t = c.ttest
        lead = {
            "better": f"{c.variant} reliably beats {c.baseline}",
            "worse": f"{c.variant} is reliably worse than {c.baseline}",
            "equivalent": f"{c.variant} and {c.baseline} are practically equivalent "
            f"(within ±{self.rope:g} {name})",
            "inconclusive": f"{c.variant} does not reliably beat {c.baseline}",
        }[c.verdict]
        holm = (
            ""
            if np.isnan(c.pvalue_holm) or c.pvalue_holm == t.pvalue
            else f", Holm-adjusted {c.pvalue_holm:.2g}"
        )
        parts = [
            f"{lead}: Δ{name} = {t.mean:+.3f}, 95% CI [{t.low:+.3f}, {t.high:+.3f}], "
            f"p = {t.pvalue:.2g} (corrected t{holm})",
            f"it won {c.wins} of {len(c.diffs)} folds",
        ]
        if noise is not None:
            parts.append(f"seed noise alone moves {name} by ±{2 * noise.seed_sd:.3f}")
        parts.append(f"this design cannot reliably detect differences below {c.mde.effect:.3f}")
        text = "; ".join(parts) + "."
        if c.verdict == "inconclusive" and c.design:
            text += " " + _design_advice(c, self.n_folds, self.n_repeats, name)
        return text


def cv_interval(results, model: str, metric: str) -> tuple[float, float, float]:
    """Mean over folds of a model's metric and its 95% CI, widened for the overlap of training
    sets between folds (the corrected resampled t interval of the mean)."""
    rows = results.metrics[results.metrics.model == model]
    scores = rows.groupby(["repeat", "fold"])[metric].mean().dropna().to_numpy()
    if len(scores) < 2:
        return (float(scores[0]) if len(scores) else float("nan")), float("nan"), float("nan")
    ci = stats.corrected_ttest(scores, *results.fold_sizes)
    return ci.mean, ci.low, ci.high


def holdout_scores(results, metric: str, *, seed: int = 0, n_resamples: int = 2000) -> list[dict]:
    """Per model, on the hold-out set that no cross-validation saw: the score of the fold models'
    averaged probabilities with a stratified bootstrap CI over hold-out samples, the mean score of
    the single fold models, and the gap to the cross-validation estimate."""
    if "holdout" not in results.rules or metric not in stats.BOOTSTRAP_METRICS:
        return []
    predictions = results.rule_predictions("holdout")
    job_metrics = results.rule_metrics("holdout")
    column = f"prob_{results.positive_name}"
    out = []
    for model in results.model_names:
        rows = predictions[predictions.model == model]
        if rows.empty:
            continue
        table = rows.pivot_table(index=["repeat", "fold", "seed_index"], columns="sample_idx", values=column)
        labels = results.labels[table.columns.to_numpy()] == results.positive
        if labels.all() or not labels.any():
            continue  # a hold-out set of one class has no AUC or balanced score
        averaged = stats.bootstrap_score(
            labels, table.to_numpy().mean(axis=0), metric=metric, n_resamples=n_resamples, seed=seed
        )
        per_job = job_metrics[job_metrics.model == model][metric].to_numpy()
        cv_mean, cv_low, cv_high = cv_interval(results, model, metric)
        out.append(
            dict(
                model=model,
                n=int(table.shape[1]),
                cv_duplicates=(results.run.get("holdout") or {}).get("cv_duplicates"),  # leaked copies
                score=averaged.estimate,
                low=averaged.low,
                high=averaged.high,
                fold_model_mean=float(np.mean(per_job)),
                fold_model_sd=float(np.std(per_job, ddof=1)) if len(per_job) > 1 else float("nan"),
                cv_mean=cv_mean,
                cv_low=cv_low,
                cv_high=cv_high,
                gap=averaged.estimate - cv_mean,
            )
        )
    return out


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


def _ranking(metrics, models, metric):
    """Friedman test and Nemenyi critical difference over the repeats (each repeat's mean score per
    model is one block: repeats re-partition the data, folds within a repeat are not independent)."""
    if len(models) < 3 or len(models) > 10:
        return None
    table = (
        metrics.groupby(["repeat", "model"])[metric].mean().unstack("model").reindex(columns=models).dropna()
    )
    if len(table) < 2:
        return None
    return list(models), stats.friedman(table.to_numpy())


def _design_advice(c: Comparison, n_folds, n_repeats, name) -> str:
    target = max(abs(c.ttest.mean), 1e-12)
    options = []
    for option in c.design:
        if option.n_repeats is not None:
            options.append(f"{option.n_folds} folds x {option.n_repeats} repeats")
        else:
            options.append(
                f"no number of repeats of {option.n_folds}-fold CV (it cannot go below {option.limit:.3f})"
            )
    return (
        f"To detect a difference of {target:.3f} {name} with 80% power would take "
        + "; ".join(options)
        + ". More repeats of the same folds add little: more folds or more data do."
    )


def _warnings(report, results, n_test) -> list[str]:
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
        sample_p = [t.delong.pvalue for t in c.sample_tests] + [t.mcnemar.pvalue for t in c.sample_tests]
        if sample_p and min(sample_p) < report.alpha and c.verdict == "inconclusive":
            warnings.append(
                f"{c.variant}: a sample-level test is significant but the fold-level test is not; "
                "sample-level tests ignore seed variance (two seeds of one model often differ)"
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
        if not (np.isnan(h["cv_low"]) or h["cv_low"] <= h["score"] <= h["cv_high"]):
            warnings.append(
                f"{h['model']}: the hold-out score {h['score']:.3f} lies outside the cross-validation CI "
                f"[{h['cv_low']:.3f}, {h['cv_high']:.3f}]: the hold-out set may differ from the rest"
            )
    if report.aa is not None and report.aa.verdict in ("better", "worse"):
        warnings.append(
            "the A/A check (baseline against itself, other seeds) claims a difference: "
            "treat every verdict of this run with suspicion"
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


def _num(x):
    x = float(x)
    return None if np.isnan(x) else x


def _components_json(v: stats.VarianceComponents) -> dict:
    return dict(
        between_split=v.between_split,
        within_split=v.within_split,
        seed_sd=v.seed_sd,
        split_sd=v.split_sd,
        n_splits=v.n_splits,
        n_seeds=v.n_seeds,
    )


def _comparison_json(c: Comparison) -> dict:
    t, bayes = c.ttest, c.bayes
    out = dict(
        variant=c.variant,
        baseline=c.baseline,
        metric=c.metric,
        verdict=c.verdict,
        paragraph=c.paragraph,
        mean_difference=t.mean,
        wins=c.wins,
        n_folds=len(c.diffs),
        corrected_ttest=dict(
            statistic=t.statistic,
            pvalue=t.pvalue,
            pvalue_holm=_num(c.pvalue_holm),
            df=t.df,
            se=t.se,
            ci_low=t.low,
            ci_high=t.high,
        ),
        bayesian=dict(
            p_worse=bayes.p_worse, p_equivalent=bayes.p_equivalent, p_better=bayes.p_better, rope=bayes.rope
        ),
        prob_outperform=None
        if c.prob is None
        else dict(statistic=c.prob.statistic, ci_low=c.prob.low, ci_high=c.prob.high, n=c.prob.n),
        minimal_detectable_effect=c.mde.effect,
        design_needed=[dict(folds=o.n_folds, repeats=o.n_repeats, limit=o.limit) for o in c.design],
        per_repeat=[
            dict(
                repeat=s.repeat,
                mcnemar=dict(
                    statistic=s.mcnemar.statistic,
                    pvalue=s.mcnemar.pvalue,
                    b=s.mcnemar.b,
                    c=s.mcnemar.c,
                    method=s.mcnemar.method,
                ),
                delong=dict(
                    auc_baseline=s.delong.auc_a,
                    auc_variant=s.delong.auc_b,
                    difference=s.delong.difference,
                    se=s.delong.se,
                    statistic=_num(s.delong.statistic),
                    pvalue=s.delong.pvalue,
                ),
            )
            for s in c.sample_tests
        ],
        bootstrap=None
        if c.bootstrap is None
        else dict(
            estimate=c.bootstrap.estimate,
            ci_low=c.bootstrap.low,
            ci_high=c.bootstrap.high,
            method=c.bootstrap.method,
            n_resamples=c.bootstrap.n_resamples,
        ),
        difference_components=None if c.diff_components is None else _components_json(c.diff_components),
    )
    return out
