"""The clinical layer of a comparison: calibration, decision curves and operating points.

Every number here is a per-fold score of the named positive class, averaged over training seeds
within a fold, then summarised over the folds with the corrected resampled t (Nadeau & Bengio)
exactly as the other metrics are: per model a mean with its corrected 95% interval, per variant
the paired difference variant - baseline with its corrected 95% interval and p-value. These
intervals are unadjusted for the number of metrics and variants: they describe, the verdict
(on ``--metric``) decides.

Operating points are chosen on each job's inner validation predictions (its kept checkpoint's)
and only then applied to its test fold; no test-fold prediction reaches the choice.

The case gallery (``case_gallery``) describes single test samples, not the procedure: the ones on
which a variant and the baseline disagree most often over repeats and seeds, and the ones each
model gets wrong most confidently. It is for failure analysis (looking at the images), not a test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import stats
from .errors import ConfigError
from .runner import VALIDATION_RULE

DEFAULT_NB_THRESHOLDS = stats.DEFAULT_NB_THRESHOLDS
DEFAULT_OPERATING_POINT = stats.DEFAULT_OPERATING_POINT
# The threshold grid of the decision curve.
CURVE_THRESHOLDS = tuple(np.round(np.arange(0.01, 1.0, 0.01), 2).tolist())
# The per-class scores of a 3+ class run, and the name of their average over classes.
PER_CLASS_KINDS = ("auc", "sensitivity", "specificity")
MACRO = "macro average"
# How many cases each list of the case gallery shows.
GALLERY_SIZE = 8
# Metrics that live in [0, 1]: their interval is built on the logit scale so it stays inside.
_BOUNDED = {"ece", "brier", "sensitivity", "specificity", "ppv", "npv"}


@dataclass(frozen=True)
class MetricTable:
    """Per model, per metric: (mean over folds, corrected 95% CI low, high). Per variant, per
    metric: the corrected t of the per-fold differences variant - baseline (None when fewer than
    two folds have both)."""

    metrics: tuple[str, ...]
    labels: dict[str, str]
    per_model: dict[str, dict[str, tuple[float, float, float]]]
    differences: dict[str, dict[str, stats.CorrectedTTestResult | None]]


@dataclass(frozen=True)
class DecisionCurve:
    """Net benefit over ``thresholds``: per model the mean over folds and its pointwise corrected
    95% band; treat-all's mean over folds (treat-none is 0 everywhere)."""

    thresholds: np.ndarray
    mean: dict[str, np.ndarray]
    low: dict[str, np.ndarray]
    high: dict[str, np.ndarray]
    treat_all: np.ndarray


@dataclass(frozen=True)
class Case:
    """One test sample of the case gallery, over every (repeat, seed) prediction of each model
    shown: its true class, each model's mean predicted probability (of ``CaseGallery.probability_of``,
    or of the true class with three or more classes), the share of its predictions that were right
    and how many there were. ``disagreement`` (discordant lists only): the share of paired
    predictions (same repeat, same seed) in which exactly one of the two models was right, out of
    ``pairs``."""

    sample_id: str
    label: str
    probability: dict[str, float]
    right: dict[str, float]
    n: dict[str, int]
    disagreement: float | None = None
    pairs: int | None = None


@dataclass(frozen=True)
class CaseGallery:
    """Per variant, the test samples on which it and the baseline disagree most often; per model,
    the samples it gets wrong in most of its predictions with the highest mean probability on a wrong
    class. Each list holds at most ``k`` cases, ties broken as case_gallery says."""

    baseline: str
    models: tuple[str, ...]
    probability_of: str | None  # the class whose probability the cases show; None: the true class
    k: int
    discordant: dict[str, tuple[Case, ...]]  # variant -> cases
    confidently_wrong: dict[str, tuple[Case, ...]]  # model -> cases


@dataclass(frozen=True)
class ClinicalReport:
    positive: str
    baseline: str
    calibration: MetricTable
    calibration_flags: dict[str, list[str]]  # model -> what its calibration intervals exclude
    weighting_note: str | None  # when class weights in the loss shift the probabilities
    decision: DecisionCurve
    nb_thresholds: tuple[float, ...]
    net_benefit: MetricTable  # metrics "nb@<t>" for the declared thresholds
    operating_rule: str | None
    operating: MetricTable | None  # None when the store keeps no validation predictions
    thresholds: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # median, min, max
    notes: list[str] = field(default_factory=list)
    # 3+ classes: one-vs-rest AUC, sensitivity and specificity per class and their macro average
    # (kind -> table whose metrics are the class names and "macro"); empty for two classes.
    per_class: dict[str, MetricTable] = field(default_factory=dict)
    # --calibrate: the method whose map, fitted on each job's validation predictions, recalibrated
    # the probabilities of the calibration, net benefit and operating point; None: the models' own.
    recalibrated: str | None = None
    # Discordant and confidently wrong test samples (the models' own probabilities); None: no predictions.
    cases: CaseGallery | None = None


def parse_thresholds(text) -> tuple[float, ...]:
    """``"0.1,0.2,0.3"`` (or a sequence of numbers) as sorted distinct thresholds in (0, 1)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        values = sorted({float(x) for x in items if str(x).strip()})
    except ValueError:
        raise ConfigError(
            f"--nb-thresholds {text!r}: write numbers between 0 and 1, e.g. 0.1,0.2,0.3"
        ) from None
    if not values or not all(0 < v < 1 for v in values):
        raise ConfigError(f"--nb-thresholds {text!r}: each threshold must lie strictly between 0 and 1")
    return tuple(values)


def parse_rule(text: str | None) -> stats.OperatingRule | None:
    if text is None or text == "none":
        return None
    try:
        return stats.parse_operating_point(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check_clinical_settings(nb_thresholds, operating_point, calibrate: str = "none") -> None:
    """``--nb-thresholds``, ``--operating-point`` and ``--calibrate`` checked before any work (a
    ``ConfigError``)."""
    parse_thresholds(nb_thresholds)
    parse_rule(operating_point)
    check_calibrate(calibrate)


def check_calibrate(calibrate: str) -> None:
    if calibrate not in stats.RECALIBRATION_METHODS:
        raise ConfigError(
            f"--calibrate {calibrate!r}: choose one of {', '.join(stats.RECALIBRATION_METHODS)}"
        )


def _class_key(kind: str, name: str) -> str:
    return f"{kind}|{name}"


def _macro_key(kind: str) -> str:  # apart from every class's key, whatever the class is named
    return f"{kind}:macro"


def nb_key(threshold: float) -> str:
    return f"nb@{threshold:g}"


def operating_point_scores(rule, val_positive, val_score, test_positive, test_score):
    """(threshold, test-fold scores): the threshold ``rule`` picks on the validation predictions
    alone, then sensitivity, specificity, PPV and NPV on the test fold at it."""
    threshold = stats.choose_threshold(rule, val_positive, val_score)
    return threshold, stats.operating_scores(test_positive, test_score, threshold)


def clinical_analysis(
    results,
    *,
    baseline: str | None = None,
    nb_thresholds=DEFAULT_NB_THRESHOLDS,
    operating_point: str | None = DEFAULT_OPERATING_POINT,
    calibrate: str = "none",
) -> ClinicalReport:
    """Calibration, decision curves and operating points of every model of ``results``, with
    paired differences against ``baseline`` (default: the run's). ``calibrate`` (``platt`` or
    ``isotonic``) first recalibrates each job's positive-class probabilities by a map fitted on
    that job's validation predictions alone; the calibration, net benefit and operating point are
    then those of the recalibrated probabilities (the per-class scores and every other metric of
    the report keep the model's own)."""
    import pandas as pd

    declared = parse_thresholds(nb_thresholds)
    rule = parse_rule(operating_point)
    baseline = baseline or results.baseline
    positive_column = f"prob_{results.positive_name}"
    keys = ["model", "repeat", "fold", "seed_index"]
    grid = np.asarray(CURVE_THRESHOLDS)
    has_val = VALIDATION_RULE in results.rules
    check_calibrate(calibrate)
    recalibrate = calibrate != "none" and has_val
    val_groups = {}
    if (rule is not None or recalibrate) and has_val:
        val = results.rule_predictions(VALIDATION_RULE)
        val_groups = {k: part for k, part in val.groupby(keys, sort=False)}
    records, curves, treat_all, class_records = [], [], [], []
    unfitted = 0
    prob_columns = [f"prob_{c}" for c in results.class_names]
    several = len(results.class_names) > 2
    for key, part in results.predictions.groupby(keys, sort=False):
        y = part["label_index"].to_numpy() == results.positive
        s = part[positive_column].to_numpy()
        record = dict(zip(keys, key))
        v = val_groups.get(key)
        val_y = None if v is None else v["label_index"].to_numpy() == results.positive
        val_s = None if v is None else v[positive_column].to_numpy()
        if recalibrate:
            fitted = None if v is None else stats.fit_recalibration(calibrate, val_y, val_s)
            if fitted is None:
                unfitted += 1
            else:
                s, val_s = fitted(s), fitted(val_s)
        record.update(stats.calibration_scores(y, s))
        for t, nb in zip(declared, stats.net_benefit(y, s, declared)):
            record[nb_key(t)] = float(nb)
        if rule is not None and v is not None:
            threshold, scores = operating_point_scores(rule, val_y, val_s, y, s)
            record.update(threshold=threshold, **{f"op_{m}": x for m, x in scores.items()})
        records.append(record)
        if several:
            scores = stats.per_class_scores(part["label_index"].to_numpy(), part[prob_columns].to_numpy())
            row = dict(zip(keys, key))
            for kind, values in scores.items():
                row.update({_class_key(kind, c): v for c, v in zip(results.class_names, values)})
                row[_macro_key(kind)] = float(np.nanmean(values)) if np.isfinite(values).any() else np.nan
            class_records.append(row)
        curves.append(stats.net_benefit(y, s, grid))
        treat_all.append(stats.treat_all_net_benefit(y, grid))
    frame = pd.DataFrame(records)
    n_train, n_test = results.fold_sizes
    models = [m for m in results.model_names if m in set(frame["model"])]
    summarise = _Summary(frame, models, baseline, n_train, n_test)

    calibration = summarise.table(stats.CALIBRATION_METRICS)
    net = summarise.table(
        tuple(nb_key(t) for t in declared), labels={nb_key(t): f"NB at {t:g}" for t in declared}
    )
    operating, thresholds, notes = None, {}, []
    if calibrate != "none" and not has_val:
        notes.append(
            f"--calibrate {calibrate}: this run's store holds no validation predictions to fit it on; the "
            "probabilities are the models' own"
        )
    elif unfitted:
        notes.append(
            f"--calibrate {calibrate}: in {unfitted} jobs the validation part held one class (or the fit "
            "did not converge), so their probabilities are left as the model gave them"
        )
    if rule is not None and not has_val:
        notes.append(
            "operating points: this run's store holds no validation predictions (it was made before "
            "cvkit kept them); run the same cvkit evaluate command into a new --out to get them"
        )
    elif rule is not None and "threshold" in frame:
        renamed = frame.rename(columns={f"op_{m}": m for m in stats.OPERATING_METRICS})
        operating = _Summary(renamed, models, baseline, n_train, n_test).table(stats.OPERATING_METRICS)
        for model in models:
            chosen = frame.loc[frame.model == model, "threshold"].dropna()
            if len(chosen):
                thresholds[model] = (float(chosen.median()), float(chosen.min()), float(chosen.max()))
        undefined = int(frame["threshold"].isna().sum())
        if undefined:
            notes.append(
                f"operating points: in {undefined} jobs the validation part held one class, so no "
                f"threshold could be chosen by {rule.text}; those jobs are left out of the table"
            )

    per_class = {}
    if several:
        classes = pd.DataFrame(class_records)
        summary = _Summary(classes, models, baseline, n_train, n_test)
        for kind in PER_CLASS_KINDS:
            metrics = (*(_class_key(kind, c) for c in results.class_names), _macro_key(kind))
            labels = dict(zip(metrics, (*results.class_names, MACRO)))
            per_class[kind] = summary.table(metrics, labels=labels, bounded=True)

    job_curves = np.array(curves)
    mean, low, high = {}, {}, {}
    for model in models:
        rows = frame.model.to_numpy() == model
        per_fold = (
            pd.DataFrame(job_curves[rows])
            .groupby([frame.repeat[rows].to_numpy(), frame.fold[rows].to_numpy()])
            .mean()
        ).to_numpy()
        mean[model], low[model], high[model] = _band(per_fold, n_train, n_test)
    decision = DecisionCurve(grid, mean, low, high, np.mean(treat_all, axis=0))
    return ClinicalReport(
        positive=results.positive_name,
        baseline=baseline,
        calibration=calibration,
        calibration_flags={m: _flags(calibration.per_model[m]) for m in models},
        weighting_note=_weighting(results, calibrate if recalibrate else None),
        decision=decision,
        nb_thresholds=declared,
        net_benefit=net,
        operating_rule=None if rule is None else rule.text,
        operating=operating,
        thresholds=thresholds,
        notes=notes,
        per_class=per_class,
        recalibrated=calibrate if recalibrate else None,
        cases=case_gallery(
            results.predictions, results.class_names, results.positive, models=models, baseline=baseline
        ),
    )


def case_gallery(
    predictions, class_names, positive: int, *, models, baseline: str, k: int = GALLERY_SIZE
) -> CaseGallery | None:
    """The discordant and the confidently wrong test samples of a run.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Out-of-fold test predictions under the verdict's checkpoint (``Results.predictions``): one
        row per (model, repeat, fold, seed, sample) with ``model``, ``repeat``, ``seed_index``,
        ``sample_idx``, ``sample_id``, ``label_index`` and ``prob_<class>`` for every class.
    class_names : sequence of str
        The classes, in the order of ``label_index``.
    positive : int
        The index of the positive class.
    models : sequence of str
        The models to describe, in the order the cases list them.
    baseline : str
        The model each variant's discordance is counted against.
    k : int, default=8
        The most cases a list holds.

    Returns
    -------
    CaseGallery or None
        None when ``predictions`` is empty. A prediction is right when its predicted class (the
        rule of every class-based metric, ``stats.predict_classes``) is the true class. Discordant:
        for each variant, the samples ranked by the share of paired predictions (same repeat, same
        seed) where exactly one of variant and baseline was right (with two classes: where their
        predicted classes differ), largest first; among equal shares, first those on which the same
        model was the right one more consistently (the larger absolute difference of the shares in
        which only the variant and only the baseline was right); samples never discordant left out.
        Confidently wrong: for each model, the samples it got wrong in more than half of its
        predictions, ranked by its mean probability of the wrong classes (1 - mean probability of
        the true class), largest first. Remaining ties go to the smaller sample id.
    """
    import pandas as pd

    if len(predictions) == 0:
        return None
    prob_columns = [f"prob_{c}" for c in class_names]
    probs = predictions[prob_columns].to_numpy(dtype=np.float64)
    labels = predictions["label_index"].to_numpy()
    two_classes = len(class_names) == 2
    true_probability = probs[np.arange(len(probs)), labels]
    frame = pd.DataFrame(
        dict(
            model=predictions["model"].to_numpy(),
            repeat=predictions["repeat"].to_numpy(),
            seed_index=predictions["seed_index"].to_numpy(),
            sample_idx=predictions["sample_idx"].to_numpy(),
            right=(stats.predict_classes(probs, positive) == labels).astype(np.float64),
            shown=probs[:, positive] if two_classes else true_probability,
            wrong=1.0 - true_probability,
        )
    )
    per_model = frame.groupby(["model", "sample_idx"]).agg(
        right=("right", "mean"), shown=("shown", "mean"), wrong=("wrong", "mean"), n=("right", "size")
    )
    samples = predictions.drop_duplicates("sample_idx").set_index("sample_idx")
    ids = samples["sample_id"].astype(str)
    models = [m for m in models if m in per_model.index.get_level_values("model")]

    def case(index, shown_models, **discordance) -> Case:
        rows = {m: per_model.loc[(m, index)] for m in shown_models if (m, index) in per_model.index}
        return Case(
            sample_id=ids[index],
            label=str(class_names[int(samples.at[index, "label_index"])]),
            probability={m: float(r["shown"]) for m, r in rows.items()},
            right={m: float(r["right"]) for m, r in rows.items()},
            n={m: int(r["n"]) for m, r in rows.items()},
            **discordance,
        )

    def top(*scores: pd.Series) -> list:
        """The indices of the ``k`` largest ``scores`` (the first; ties by the next), then by sample id."""
        index = scores[0].index
        order = pd.DataFrame({i: s.loc[index].to_numpy() for i, s in enumerate(scores)}, index=index)
        order["id"] = ids[index].to_numpy()
        ascending = [False] * len(scores) + [True]
        return order.sort_values(list(order.columns), ascending=ascending, kind="stable").index[:k].tolist()

    keys = ["repeat", "seed_index", "sample_idx"]
    reference = frame[frame.model == baseline].set_index(keys)["right"]
    discordant = {}
    for variant in models:
        if variant == baseline:
            continue
        other = frame[frame.model == variant].set_index(keys)["right"]
        both = reference.index.intersection(other.index)
        a, b = reference.loc[both], other.loc[both]
        exactly_one = (a != b).groupby(level="sample_idx")
        rate, pairs = exactly_one.mean(), exactly_one.size()
        # Among equal rates, first the samples on which the same model was the right one each time.
        one_sided = (b - a).groupby(level="sample_idx").mean().abs()
        discordant[variant] = tuple(
            case(i, (baseline, variant), disagreement=float(rate[i]), pairs=int(pairs[i]))
            for i in top(rate[rate > 0], one_sided)
        )
    confidently_wrong = {}
    for model in models:
        rows = per_model.loc[model]
        wrong = rows.loc[rows["right"] < 0.5, "wrong"]
        confidently_wrong[model] = tuple(case(i, models) for i in top(wrong))
    return CaseGallery(
        baseline=baseline,
        models=tuple(models),
        probability_of=str(class_names[positive]) if two_classes else None,
        k=k,
        discordant=discordant,
        confidently_wrong=confidently_wrong,
    )


class _Summary:
    """Per-fold scores (seeds averaged) summarised per model and paired against the baseline."""

    def __init__(self, frame, models, baseline, n_train, n_test):
        self.models, self.baseline = models, baseline
        self.n_train, self.n_test = n_train, n_test
        self.frame = frame

    def per_fold(self, model, metric):
        rows = self.frame[self.frame.model == model]
        return rows.groupby(["repeat", "fold"])[metric].mean().dropna()

    def table(self, metrics, labels=None, *, bounded=False) -> MetricTable:
        labels = labels or {m: stats.metric_label(m) for m in metrics}
        per_model = {
            model: {
                m: self.interval(self.per_fold(model, m).to_numpy(), bounded or m in _BOUNDED)
                for m in metrics
            }
            for model in self.models
        }
        differences = {}
        for variant in self.models:
            if variant == self.baseline or self.baseline not in self.models:
                continue
            differences[variant] = {}
            for m in metrics:
                a, b = self.per_fold(self.baseline, m), self.per_fold(variant, m)
                both = a.index.intersection(b.index)
                d = (b.loc[both] - a.loc[both]).to_numpy()
                differences[variant][m] = (
                    stats.corrected_ttest(d, self.n_train, self.n_test) if len(d) >= 2 else None
                )
        return MetricTable(tuple(metrics), dict(labels), per_model, differences)

    def interval(self, scores, bounded) -> tuple[float, float, float]:
        if len(scores) == 0:
            return float("nan"), float("nan"), float("nan")
        if len(scores) < 2:
            return float(scores[0]), float("nan"), float("nan")
        t = stats.corrected_ttest(scores, self.n_train, self.n_test)
        if bounded:
            return (t.mean, *stats.bounded_interval(t.mean, t.se, t.df))
        return t.mean, t.low, t.high


def _band(per_fold: np.ndarray, n_train, n_test):
    """Pointwise mean and corrected 95% t band over folds (rows) of curves (columns)."""
    from scipy import stats as sps

    mean = per_fold.mean(axis=0)
    if len(per_fold) < 2:
        return mean, mean * np.nan, mean * np.nan
    J = len(per_fold)
    se = np.sqrt((1 / J + n_test / n_train) * per_fold.var(axis=0, ddof=1))
    half = sps.t.ppf(0.975, J - 1) * se
    return mean, mean - half, mean + half


def _flags(row) -> list[str]:
    """What a model's calibration intervals exclude, in words."""
    flags = []
    _, low, high = row["cal_slope"]
    if high < 1:
        flags.append("overconfident: the calibration slope's interval lies below 1 (predictions too extreme)")
    elif low > 1:
        flags.append("underconfident: the calibration slope's interval lies above 1 (predictions too modest)")
    _, low, high = row["cal_intercept"]
    if low > 0:
        flags.append(
            "under-predicts: the calibration intercept's interval lies above 0 (risks too low on average)"
        )
    elif high < 0:
        flags.append(
            "over-predicts: the calibration intercept's interval lies below 0 (risks too high on average)"
        )
    return flags


def _weighting(results, recalibrated: str | None) -> str | None:
    note = weighting_note(results)
    if note and recalibrated:
        note += (
            f" Here --calibrate {recalibrated} refits the probabilities on validation predictions, which "
            "removes this shift up to the error of that fit."
        )
    return note


def weighting_note(results) -> str | None:
    """A plain sentence when class weights in the loss shift the predicted probabilities."""
    weights = results.class_weights()
    if not weights or len(set(np.round(list(weights.values()), 6))) == 1:
        return None
    positive = results.positive_name
    w_positive = weights[positive]
    others = [w for name, w in weights.items() if name != positive]
    ratio = w_positive / float(np.mean(others))
    if not math.isfinite(ratio) or ratio <= 0:
        return None
    listed = ", ".join(f"{k} {v:.2f}" for k, v in weights.items())
    other = "one of the other classes" if len(others) > 1 else "one of the other class"
    return (
        f"The models were trained with class weights in the loss ({listed}): a {positive} sample "
        f"counts {ratio:.2f} times as much as {other}, which multiplies the predicted odds of "
        f"{positive} by about {ratio:.2f}. The calibration figures reflect this reweighting, not the "
        "model alone; train with --class-weight none to judge the model's own calibration."
    )
