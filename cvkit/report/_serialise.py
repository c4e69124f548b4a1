"""One serialisation of a comparison report into plain values (dicts, lists, floats, strings).

JSON writes these records as they are; the HTML, Markdown and LaTeX documents, the MLflow tags and
the terminal's comparison table read their numbers from them. A new statistic is one field of a
result object, one entry here and one block in each template.
"""

from __future__ import annotations

import dataclasses

from .._json import nan_to_none
from ..verdict_text import interval_label
from ._clinical import clinical_record
from ._narrative import (
    ESTIMANDS,
    aa_sentence,
    aa_verdict,
    friedman_sentence,
    mean_ranks_sentence,
    noise_sentence,
    registration_sentence,
    single_split_sentence,
    tests_used,
    verdict_css,
)


def report_record(report) -> dict:
    """Every statistic of ``report`` (a ``ComparisonReport``) and the sentences that read it."""
    return dict(
        metric=report.metric,
        alpha=report.alpha,
        rope=report.rope,
        baseline=report.baseline,
        design=dict(folds=report.n_folds, repeats=report.n_repeats, seeds=report.n_seeds),
        single_split_range=list(report.single_split),
        single_split_sentence=single_split_sentence(report),
        seed_noise=None if report.noise is None else components_record(report.noise),
        seed_noise_sentence=None
        if report.noise is None
        else noise_sentence(report.noise, report.baseline, report.metric, report.n_seeds),
        comparisons={c.variant: comparison_record(c) for c in report.comparisons},
        verdict_tests=tests_used(report),
        aa_check=None if report.aa is None else aa_record(report),
        checkpoint_selection=report.selection,
        warnings=list(report.warnings),
        pairwise=[
            dict(
                model_a=p.model_a,
                model_b=p.model_b,
                difference=p.ttest.mean,
                ci_low=p.ttest.low,
                ci_high=p.ttest.high,
                confidence=p.confidence,
                pvalue=p.ttest.pvalue,
                pvalue_holm=p.pvalue_holm,
                verdict=p.verdict,
            )
            for p in report.pairwise
        ],
        mean_ranks=dict(report.mean_ranks) or None,
        mean_ranks_sentence=mean_ranks_sentence(report) if report.mean_ranks else None,
        # Friedman/Nemenyi needs independent data sets as blocks: never from one run (see `ranking_record`)
        friedman=None,
        nested=report.nested,
        holdout=report.holdout,
        registration=None if report.registration is None else registration_record(report.registration),
        clinical=clinical_record(getattr(report, "clinical", None)),
        estimands=dict(ESTIMANDS),
    )


def registration_record(registration) -> dict:
    """The run's pre-registered plan and whether this analysis keeps to it, for every record (a
    run's comparison, a grid's).

    Parameters
    ----------
    registration : cvkit.comparison.Registration
        The plan's sha256, the analysis's status against it and its deviations.

    Returns
    -------
    dict
        ``status``, ``sha256``, ``deviations``, ``plan`` and the ``sentence`` every report opens with.
    """
    return dict(
        status=registration.status,
        sha256=registration.sha256,
        deviations=list(registration.deviations),
        plan=registration.plan,
        sentence=registration_sentence(registration),
    )


def aa_record(report) -> dict:
    aa = report.aa
    return dict(
        verdict=aa_verdict(aa),
        verdict_class="worse" if aa.differs else "inconclusive",
        difference=aa.estimate,
        se=aa.se,
        df=aa.df,
        statistic=aa.t,
        pvalue=aa.p,
        ci_low=aa.ci_low,
        ci_high=aa.ci_high,
        confidence=1 - aa.alpha,
        seed_sd=aa.seed_sd,
        power_at_one_seed_sd=aa.power_one_sd,
        n_splits=aa.n_splits,
        seeds_per_half=list(aa.seeds_per_half),
        sentence=aa_sentence(report),
    )


def advice_record(advice) -> dict:
    def design(d):
        return (
            None
            if d is None
            else dict(
                folds=d.n_folds,
                repeats=d.n_repeats,
                seeds=d.n_seeds,
                data_factor=d.data_factor,
                power=d.power,
            )
        )

    return dict(
        min_effect=advice.min_effect,
        target_power=advice.target_power,
        method=advice.method,
        current=design(advice.current),
        by_lever={lever: design(d) for lever, d in advice.by_lever.items()},
        cheapest=design(advice.cheapest),
        data_needed=advice.data_needed,
        data_design=design(advice.data_design),
        sentence=advice.sentence,
    )


def comparison_record(c) -> dict:
    t, bayes = c.ttest, c.bayes
    return dict(
        variant=c.variant,
        baseline=c.baseline,
        metric=c.metric,
        verdict=c.verdict,
        verdict_class=verdict_css(c.verdict),
        paragraph=c.paragraph,
        # a sequential run's looks (repeats, estimate, se, z, information fraction, boundary,
        # conditional power, repeated interval, decision); the verdict is the last look's
        sequential=[dataclasses.asdict(look) for look in c.sequential] or None,
        mean_difference=t.mean,
        wins=c.wins,
        n_folds=len(c.diffs),
        verdict_test=dict(
            method=t.method,
            statistic=t.statistic,
            pvalue=t.pvalue,
            pvalue_holm=nan_to_none(c.pvalue_holm),
            df=t.df,
            se=t.se,
            ci_low=t.low,
            ci_high=t.high,
            confidence=c.confidence,
        ),
        interval_label=interval_label(c),
        holm_family_size=c.family_size,
        bayesian=dict(
            p_worse=bayes.p_worse, p_equivalent=bayes.p_equivalent, p_better=bayes.p_better, rope=bayes.rope
        ),
        rope=c.rope,
        smallest_confirmable_rope=c.smallest_rope,
        prob_outperform=None if c.prob is None else dict(statistic=c.prob.statistic, n=c.prob.n),
        minimal_detectable_effect=c.mde,
        design_advice=advice_record(c.advice),
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
                    statistic=nan_to_none(s.delong.statistic),
                    pvalue=s.delong.pvalue,
                ),
            )
            for s in c.sample_tests
        ],
        sample_pvalue_holm=nan_to_none(c.sample_pvalue_holm),
        bootstrap=None
        if c.bootstrap is None
        else dict(
            estimate=c.bootstrap.estimate,
            ci_low=c.bootstrap.low,
            ci_high=c.bootstrap.high,
            method=c.bootstrap.method,
            n_resamples=c.bootstrap.n_resamples,
        ),
        difference_components=None if c.diff_components is None else components_record(c.diff_components),
    )


def components_record(v) -> dict:
    return dict(
        between_split=v.between_split,
        within_split=v.within_split,
        seed_sd=v.seed_sd,
        split_sd=v.split_sd,
        seed_share=nan_to_none(v.seed_share),
        split_truncated=v.split_truncated,
        n_splits=v.n_splits,
        n_seeds=v.n_seeds,
    )


def ranking_record(ranking) -> dict:
    """A ranking over data sets (``MultiRunRanking``)."""
    f = ranking.friedman
    return dict(
        metric=ranking.metric,
        models=ranking.models,
        runs=ranking.runs,
        data_sets=ranking.data_sets,
        scores=ranking.scores.tolist(),
        statistic=f.statistic,
        pvalue=f.pvalue,
        mean_ranks=f.mean_ranks.tolist(),
        critical_difference=f.critical_difference,
        n_blocks=f.n_blocks,
        sentence=friedman_sentence(ranking),
        estimand=ESTIMANDS["friedman"],
    )


def plan_record(plan, grid=None) -> dict:
    """A design plan (``cvkit.planning.DesignPlan``): every design with its power and cost.

    Parameters
    ----------
    plan : DesignPlan
        The plan (``cvkit.planning.plan_from_run`` or ``plan_from_priors``).
    grid : GridPower or None, default=None
        A recipe grid's projected power (``cvkit.planning.grid_power``); None: no grid.

    Returns
    -------
    dict
        Plain values: the plan's settings (source, metric, smallest effect, alpha overall and per
        variant, target power, test, models, sample and class counts, seconds per split), every
        design (folds, repeats, seeds, data factor, samples, power, smallest detectable difference,
        trainings, seconds, whether it reaches the power), the recommended one, the data needed,
        the sentence, the sequential designs and the estimand; with a grid, ``grid``: the grid,
        the design each cell runs, one cell's verdict's alpha (Holm's first step), power and
        detectable difference, the grid average's (conservatively) and how they were projected.
        NaN and infinity are kept (``write_plan_json`` writes them as null).
    """
    record = dict(
        source=plan.source,
        metric=plan.metric,
        min_effect=plan.min_effect,
        alpha=plan.alpha,
        alpha_per_test=plan.alpha_per_test,
        target_power=plan.target_power,
        method=plan.method,
        baseline=plan.baseline,
        variants=list(plan.variants),
        planned_for=plan.planned_for,
        n_samples=plan.n_samples,
        class_counts=plan.class_counts,
        seconds_per_split=plan.seconds_per_split,
        designs=[_design_record(d) for d in plan.designs],
        recommended=None if plan.recommended is None else _design_record(plan.recommended),
        data_needed=plan.data_needed,
        sentence=plan.sentence,
        sequential=[dataclasses.asdict(d) for d in plan.sequential],
        estimand=ESTIMANDS["plan"],
    )
    if grid is not None:  # a key of its own: the record of a plan without a grid is as it was
        record["grid"] = dict(
            vary=grid.vary, design=_design_record(grid.design), n_cells=grid.n_cells,
            n_variants=grid.n_variants, cell_alpha=grid.cell_alpha, cell_power=grid.cell_power,
            cell_detectable=grid.cell_detectable, average_alpha=grid.average_alpha,
            average_power=grid.average_power, average_detectable=grid.average_detectable, basis=grid.basis,
        )  # fmt: skip
    return record


def _design_record(design) -> dict:
    return dict(
        folds=design.n_folds,
        repeats=design.n_repeats,
        seeds=design.n_seeds,
        data_factor=design.data_factor,
        n_samples=design.n_samples,
        power=design.power,
        detectable=design.detectable,
        trainings=design.trainings,
        seconds=design.seconds,
        reaches=design.reaches,
    )
