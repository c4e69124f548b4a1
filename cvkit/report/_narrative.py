"""Every sentence the reports say about the statistics, in one place: the terminal, HTML, Markdown,
LaTeX, JSON and MLflow all take their words from here, so that a number reads the same everywhere
and says what it estimates (its estimand) where it is shown."""

from __future__ import annotations

import json
from collections import Counter

from ..stats import metric_label
from ..verdict_text import TEST_NAMES
from ._format import plural

# What each reported number estimates: shown beside the number in every report.
ESTIMANDS = dict(
    verdict="mean over the folds of the per-fold difference (variant - baseline, training seeds "
    "averaged): the difference of the two training procedures at this training-set size",
    interval="interval of the verdict's test (see verdict_test) at the level of the variant's Holm "
    "step: it excludes 0 exactly when Holm rejects at alpha (step-down consistent, not simultaneous)",
    verdict_test="sampling_within: the test-sample variance of each job's difference (DeLong's for "
    "AUC, per sample for the proportions) over the k folds, plus the split-to-split variation "
    "within repeats, Satterthwaite's degrees of freedom; the one test that kept its false-positive "
    "rate and coverage within nominal in every training regime of benchmarks/calibration.py. "
    "corrected_t (Nadeau-Bengio, df k*r-1) when the run cannot support it: one repeat, or F1",
    aa_check="the baseline's even-numbered training seeds against its odd-numbered ones, split by "
    "split: their per-split difference is seed noise alone, so a one-sample t over the splits, "
    "which says 'differs' in alpha of runs when seeds are exchangeable",
    bootstrap="difference of the first seed's fitted models on the pooled out-of-fold predictions, "
    "averaged over repeats: conditional on those fitted models and these samples; it ignores "
    "seed and training-set variance",
    sample_tests="McNemar and DeLong per repeat compare the first seed's fitted models on that "
    "repeat's out-of-fold predictions; the warning uses Holm over all of them",
    prob_outperform="share of paired jobs (same split, same seed) the variant won, ties counting "
    "one half: descriptive only; the pairs share splits, so no interval is given",
    cv_interval="mean over folds (seeds averaged) with the corrected 95% t interval, built on the "
    "logit scale so that it stays inside [0, 1]",
    holdout="fold models' averaged probabilities scored on the hold-out set, 95% stratified "
    "percentile bootstrap over hold-out samples; gap tested on the logit scale counting both "
    "estimates' sampling error, Holm across models",
    mean_ranks="mean rank of each model over the folds of this one data set: a description, not a "
    "test (folds of one data set are not independent blocks)",
    pairwise="every pair of models by the corrected t, Holm over all pairs",
    friedman="Friedman test over data sets as blocks (one run each), Nemenyi critical difference at "
    "alpha 0.05 (Demsar 2006)",
    design_advice="projected power of the verdict's test for the smallest effect of interest "
    "(--min-effect, default the ROPE; never the observed difference), from this run's variance "
    "components (test samples, seeds, splits) each scaled by the lever that changes it; in the "
    "calibration bench, designs stated at 80% power reached 74-88% (above 80% where the test is "
    "conservative)",
    plan="projected power of the verdict's test, for each design, to detect the smallest effect of "
    "interest stated in advance, at alpha split over the variants (Holm's first step); from an "
    "earlier run's variance components (test samples, seeds, splits) or stated priors, each scaled "
    "by the lever that changes it; 'detects' is the smallest true difference found with the target "
    "power; times scale the measured job times with the training-set size",
    smallest_rope="the narrowest ROPE this design could confirm as equivalent if the true difference "
    "were 0 (t(0.975, df) x the corrected standard error)",
    seed_noise="one-way random effects over splits (ANOVA): the training seed's sd within a split "
    "and the sd between splits",
    calibration="per test fold, of the positive-class probability: the calibration intercept "
    "(logistic recalibration with the slope fixed at 1; 0 = right on average, above 0 = risks too "
    "low), the calibration slope (1 = right spread, below 1 = overconfident), the expected "
    "calibration error (10 equal-width bins; biased upward on small folds, so compare models rather "
    "than read it against 0) and the Brier score (lower is better); mean over folds (seeds "
    "averaged) with the corrected 95% t interval, unadjusted for the number of metrics; Δ rows: "
    "per-fold difference variant - baseline with its corrected 95% interval and p",
    net_benefit="net benefit TP/n - FP/n x t/(1 - t) of treating the samples whose positive-class "
    "probability is at least t, per test fold; mean over folds (seeds averaged) with the corrected "
    "95% t interval; treat all: the same for treating everyone (treating no one scores 0); Δ rows: "
    "per-fold difference variant - baseline at the thresholds declared before the analysis "
    "(--nb-thresholds), corrected 95% interval and p, unadjusted",
    operating_point="the operating point (a threshold) is chosen by the rule on each job's inner "
    "validation predictions (its kept checkpoint's), never on the test fold, then applied to that job's test "
    "fold: sensitivity, specificity, PPV and NPV there, mean over folds (seeds averaged) with the "
    "corrected 95% t interval (logit scale); threshold: median and range over jobs; Δ rows: "
    "per-fold difference variant - baseline, corrected 95% interval and p, unadjusted. PPV and "
    "NPV depend on this data set's prevalence",
    per_class="per test fold, each class against all the others: the AUC of that class's "
    "probability, the sensitivity (recall of that class) and the specificity (share of the other "
    "classes' samples not called it), the predicted class being the most probable one; macro "
    "average: the unweighted mean over the classes present in the fold; mean over folds (seeds "
    "averaged) with the corrected 95% t interval (logit scale), unadjusted; Δ rows: per-fold "
    "difference variant - baseline, corrected 95% interval and p",
    discordant="per test sample, over its out-of-fold predictions under the verdict's checkpoint (one "
    "per repeat and training seed): the share of paired predictions (same repeat, same seed) in which "
    "exactly one of the variant and the baseline predicted the true class (with two classes: in which "
    "their predicted classes differ), largest first; among equal shares first the samples on which the "
    "same model was the right one more consistently, then by sample id; P: each model's mean predicted "
    "probability of the positive class (three or more classes: of the true class), the models' own "
    "probabilities; right: how many of its predictions named the true class (the most probable class; "
    "with two classes the positive one at probability 0.5 or more). A description of single samples "
    "chosen for their disagreement, for failure analysis, not a test",
    confidently_wrong="per model, the test samples it got wrong in more than half of its predictions, "
    "ranked by its mean probability of the wrong classes (1 - the mean probability of the true class), "
    "largest first, ties by sample id",
)

# The glossary the HTML and Markdown reports end with, for a reader who is not a statistician:
# anchor -> (term, one-line meaning, the pattern that finds the term in the reports' sentences).
GLOSSARY = {
    "corrected-t": (
        "corrected t",
        "the corrected resampled t-test (Nadeau and Bengio): a t-test on the per-fold differences "
        "whose variance is widened by n_test/n_train, because folds share training data and a plain "
        "t-test would find differences that are not there",
        r"corrected(?: resampled)? t(?:-test)?\b|corrected_t\b",
    ),
    "sampling-within": (
        "sampling-within test",
        "cvkit's verdict test: each test fold's own sampling noise (DeLong's variance for AUC) plus "
        "the spread between splits; it kept its false-positive rate near alpha in every training "
        "regime of cvkit's calibration bench",
        r"sampling[-_]within(?: test)?",
    ),
    "rope": (
        "ROPE",
        "region of practical equivalence: differences smaller than this are negligible in practice; "
        "'equivalent' needs 95% of the Bayesian posterior of the difference inside it, and a "
        "significant difference whose whole interval lies inside it reads 'but negligible'",
        r"\bROPE\b",
    ),
    "holm": (
        "Holm",
        "Holm's step-down correction for several variants against one baseline: the chance of any "
        "false 'better' among them stays at alpha",
        r"\bHolm\b",
    ),
    "mde": (
        "MDE",
        "minimum detectable effect: the true difference this design would detect 80% of the time, "
        "projected from this run's noise; smaller real gains would often be missed",
        r"\bMDE\b",
    ),
    "mid-p": (
        "mid-p",
        "McNemar's exact test on the discordant predictions with the mid-p correction: less "
        "conservative than the plain exact test, still close to its nominal level on small samples",
        r"\bmid-p\b",
    ),
    "bca": (
        "BCa",
        "bias-corrected and accelerated bootstrap interval: a bootstrap confidence interval "
        "adjusted for bias and skew in the estimate",
        r"\bBCa\b",
    ),
    "calibration-slope": (
        "calibration slope",
        "the slope of a logistic regression of the outcome on the logit of the predicted "
        "probability: 1 when predictions spread as much as the risks do, below 1 when they are too "
        "extreme (overconfident), above 1 when too timid",
        r"calibration slope",
    ),
    "net-benefit": (
        "net benefit",
        "decision-curve analysis (Vickers and Elkin): true positives per patient minus false "
        "positives per patient weighted by t/(1 - t), the odds at which a clinician would treat; a "
        "model is useful at t where it beats both treating everyone and treating no one",
        r"net benefit",
    ),
    "operating-point": (
        "operating point",
        "the probability threshold at which a model calls a case positive; cvkit chooses it on "
        "validation predictions only, so that the test-fold sensitivity and specificity at it are "
        "not flattered by the choice",
        r"operating point",
    ),
    "aa": (
        "A/A check",
        "the baseline against itself under other training seeds: it should say 'no difference' in "
        "about 1 - alpha of runs; when it does not, training is too unstable to trust the verdict",
        r"\bA/A(?: check)?",
    ),
}


def verdict_css(verdict: str) -> str:
    """The verdict as one word, for a style or an HTML class: 'better, but negligible' -> negligible."""
    return "negligible" if verdict.endswith("negligible") else verdict


# A bootstrap interval's method as the reports name it.
BOOTSTRAP_METHODS = dict(bca="BCa", percentile="percentile")


def tests_used(report) -> str:
    """The verdict tests this report's comparisons ran, by name (one, unless the run mixes)."""
    methods = sorted({c.ttest.method for c in report.comparisons}) or [None]
    return " / ".join(TEST_NAMES.get(m, "no test") for m in methods)


def noise_sentence(noise, baseline: str, metric: str, n_seeds: int) -> str:
    """The seed noise floor; a split component truncated at 0 is said to be so, never '100% seed'."""
    name = metric_label(metric)
    head = (
        f"Seed noise floor: {baseline}'s {name} varies by sd {noise.seed_sd:.3f} from the training seed alone"
    )
    if noise.split_truncated:
        return (
            f"{head}; the between-split component was estimated as 0 (truncated: not distinguishable "
            f"from seed noise with {noise.n_splits} splits x {n_seeds} seeds), so no seed share is given."
        )
    return (
        f"{head} and by sd {noise.split_sd:.3f} between splits ({n_seeds} seeds per split; "
        f"seed share {noise.seed_share:.0%})."
    )


def single_split_sentence(report) -> str:
    low, high = report.single_split
    return (
        f"Single-split illusion: one train/test split of {report.baseline} would have shown "
        f"{metric_label(report.metric)} anywhere from {low:.3f} to {high:.3f}."
    )


def aa_sentence(report) -> str:
    """The seed-noise (A/A) check: its test, its outcome and its power."""
    aa = report.aa
    name = metric_label(report.metric)
    outcome = (
        "the model differs from itself: seeds may not be exchangeable in this run"
        if aa.differs
        else "no difference, as expected of a model against itself"
    )
    return (
        f"A/A check ({report.baseline}, even vs odd seeds over {aa.n_splits} splits): {outcome}; "
        f"Δ{name} {aa.estimate:+.3f} [{aa.ci_low:+.3f}, {aa.ci_high:+.3f}], p = {_p(aa.p)}. It says "
        f"'differs' in {aa.alpha:.0%} of runs by chance, and finds an offset of one seed sd "
        f"({aa.seed_sd:.3f}) between the halves with probability {aa.power_one_sd:.0%}."
    )


def aa_verdict(aa) -> str:
    return "differs" if aa.differs else "no difference"


def mean_ranks_sentence(report) -> str:
    ranks = ", ".join(f"{m} {r:.2f}" for m, r in sorted(report.mean_ranks.items(), key=lambda x: x[1]))
    n_pairs = len(report.pairwise)
    significant = [p for p in report.pairwise if p.verdict.startswith(("better", "worse"))]
    pairs = (
        "; ".join(
            f"{p.model_b} {p.verdict.split(',')[0]} than {p.model_a} (Δ {p.ttest.mean:+.3f})"
            for p in significant
        )
        or "no pair differs"
    )
    return (
        f"Mean ranks over the folds (descriptive only, not a test: the folds of one data set are not "
        f"independent): {ranks}. All {n_pairs} pairs by the corrected t with Holm: {pairs}."
    )


def friedman_sentence(ranking) -> str:
    f = ranking.friedman
    ranks = ", ".join(
        f"{m} {r:.2f}" for m, r in sorted(zip(ranking.models, f.mean_ranks), key=lambda x: x[1])
    )
    return (
        f"Ranking of {len(ranking.models)} models over {f.n_blocks} data sets "
        f"({', '.join(ranking.data_sets)}; Friedman, data sets as blocks): chi2 = {f.statistic:.2f}, "
        f"p = {_p(f.pvalue)}; mean ranks {ranks}; "
        f"models whose mean ranks differ by less than the Nemenyi critical difference "
        f"{f.critical_difference:.2f} (alpha 0.05) are not distinguishable."
    )


def _nested_counts(entry) -> list[tuple[str, int]]:
    """Each distinct choice of a nested search, written ``name=value, ...``, with the number of
    outer folds that chose it, most frequent first."""
    counts = Counter(json.dumps(c["params"], sort_keys=True) for c in entry["choices"])
    written = {choice: ", ".join(f"{k}={v}" for k, v in json.loads(choice).items()) for choice in counts}
    return [(written[choice], n) for choice, n in counts.most_common()]


def nested_sentence(model: str, entry) -> str:
    """How stable a nested search was. A tie for the most frequent choice is called a tie: "chosen
    in 50%" would suggest a preference that one outer fold either way undoes."""
    counts, total = _nested_counts(entry), len(entry["choices"])
    head = f"Nested search for {model} ({plural(entry['inner_folds'], 'inner fold')}): "
    if len(counts) == 1:
        return head + f"{counts[0][0]} was chosen in every one of the {plural(total, 'outer fold')}."
    top = counts[0][1]
    tied = [choice for choice, n in counts if n == top]
    if len(tied) > 1:
        return head + (
            f"no choice stands out: {' and '.join(tied)} were each chosen in {top} of "
            f"{plural(total, 'outer fold')}."
        )
    return head + f"{counts[0][0]} was chosen in {top} of {plural(total, 'outer fold')} ({top / total:.0%})."


def nested_choices_text(entry) -> str:
    """The searched hyper-parameters of a model as the set-up lists them: chosen per outer fold."""
    total = len(entry["choices"])
    chosen = "; ".join(f"{choice} in {n} of {total}" for choice, n in _nested_counts(entry))
    return f"chosen per outer fold by nested search: {chosen}"


def _p(p) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def registration_sentence(registration) -> str:
    """What a run's pre-registered plan means for this analysis: "Pre-registered analysis" with the
    plan, or "Exploratory analysis" with what departs from it."""
    plan = registration.plan
    short = registration.sha256[:12]
    if registration.status == "exploratory":
        return (
            f"Exploratory analysis: it departs from the run's pre-registered plan (sha256 {short}) in "
            f"{'; '.join(registration.deviations)}. The pre-registered analysis is cvkit compare on this "
            "run without those settings."
        )
    analysis, design, models = plan["analysis"], plan["design"], plan["models"]
    rope = f"ROPE ±{analysis['rope']:g}" if "rope" in analysis else "the metric's own ROPE"
    return (
        f"Pre-registered analysis: plan sha256 {short}, fixed before the run: "
        f"{metric_label(analysis['metric'])}, alpha {analysis['alpha']:g}, {rope}, smallest effect of "
        f"interest {analysis['min_effect']:g}; baseline {models['baseline']}, "
        f"{plural(len(models['variants']), 'variant')} ({', '.join(models['variants'])}); "
        f"{plural(design['folds'], 'fold')} x {plural(design['repeats'], 'repeat')} x "
        f"{plural(design['seeds'], 'seed')} per split; {analysis['stopping_rule']}."
    )
