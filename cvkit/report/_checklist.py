"""A reporting-checklist section (TRIPOD+AI 2024, CLAIM 2024) for the HTML and Markdown reports.

Each topic that cvkit can answer is answered from the run: the data's source and content
fingerprint, the partitions and grouping, the positive class and how it was set, the sample-size
rationale of the design, seed robustness, calibration and clinical utility, code and plugin
hashes, software versions. The topics only the authors can answer are listed for them, so the
researcher sees what is left. Topics are named rather than numbered: item numbers differ between
versions of the checklists.
"""

from __future__ import annotations

import json
import math
import shlex

from ..stats import metric_label
from ._format import number, plural, signed
from ._narrative import aa_sentence, noise_sentence
from ._setup import data_use

# What only the authors know: (topic, what to report).
FOR_THE_AUTHORS = (
    (
        "Title and abstract",
        "identify the study as developing or evaluating a prediction model, with its "
        "target population and outcome",
    ),
    (
        "Intended use",
        "the clinical setting, the decision the model supports, its intended users and where "
        "it sits in the care pathway",
    ),
    (
        "Participants and dates",
        "eligibility criteria, recruitment, the centres and the dates of data "
        "collection; how the data set was assembled",
    ),
    (
        "Reference standard",
        "how the labels were established (histology, follow-up, expert reading), by "
        "whom, their experience, and the agreement between annotators",
    ),
    ("Image acquisition", "devices, protocols and any preprocessing done before cvkit read the images"),
    ("Missing data and exclusions", "how many cases were excluded and why; how missing values were handled"),
    (
        "Fairness and subgroups",
        "performance across relevant subgroups (sex, age, centre, device) and any "
        "groups the model may serve less well",
    ),
    (
        "External validation",
        "performance on data from other centres or periods: cross-validation estimates "
        "internal validity only",
    ),
    (
        "Failure analysis",
        "the cases both models get wrong and why (the out-of-fold predictions are in the "
        "run's store: cvkit export --predictions)",
    ),
    ("Ethics and consent", "approval, consent or waiver, and data-protection measures"),
    ("Availability", "how data, code and trained models can be obtained, and their licences"),
    ("Patient and public involvement", "whether and how patients or the public were involved"),
    ("Interpretation and limitations", "what the results mean for practice, and the study's limitations"),
    ("Funding and conflicts of interest", "sources of funding and the authors' competing interests"),
)


def checklist(results, report) -> dict:
    """``answered``: (topic, answer from the run) pairs; ``for_authors``: (topic, what to report)."""
    run, data, design, config = results.run, results.run["data"], results.run["design"], results.run["config"]
    counts = ", ".join(f"{name} {n}" for name, n in data["class_counts"].items())
    shape = "x".join(map(str, data.get("image_shape") or [])) or "of varying size"
    answered = [
        (
            "Data source",
            f"{data['name']}"
            + (f" ({data['description']})" if data.get("description") else "")
            + f"; {data['n_samples']} samples ({counts}), images {shape}"
            + (f"; content fingerprint {data['fingerprint'][:16]}" if data.get("fingerprint") else ""),
        ),
        ("Outcome and positive class", _positive(results, run)),
        ("Partitions", _partitions(run, data, design, config)),
        *[(f"Data: {label}", text) for label, text in data_use(run)],
        ("Sample size", _sample_size(report)),
        ("Models and training", _models(results, config)),
        ("Robustness to the training seed", _seeds(report)),
        ("Performance and uncertainty", _performance(report)),
    ]
    clinical = getattr(report, "clinical", None)
    if clinical is not None:
        answered += [
            ("Calibration", _calibration(clinical)),
            ("Clinical utility", _utility(clinical)),
        ]
        if clinical.operating_rule:
            answered.append(("Operating point", _operating(clinical)))
    cases = getattr(clinical, "cases", None)
    if cases is not None:
        answered.append(
            ("Failure analysis", _failure_analysis(cases, pictures=results.thumbnails is not None))
        )
    answered += [
        ("Code", _code(results, run)),
        ("Software and hardware", _software(results, run)),
    ]
    answered_topics = {topic for topic, _ in answered}
    return dict(answered=answered, for_authors=[t for t in FOR_THE_AUTHORS if t[0] not in answered_topics])


def _positive(results, run) -> str:
    mapping = ", ".join(f"{i} = {name}" for i, name in enumerate(results.class_names))
    command = run.get("command")
    if results.made_for != results.positive_name:
        how = f"named when re-analysing (--positive); the run itself was made for {results.made_for}"
    elif command is None:
        how = "set by the Python call (cvkit's default is the minority class)"
    elif "--positive" in shlex.split(command):
        how = "named with --positive"
    else:
        how = "cvkit's default, the minority class"
    return f"labels {mapping}; positive class {results.positive_name} ({how})"


def _partitions(run, data, design, config) -> str:
    text = (
        f"{design['folds']}-fold cross-validation x {plural(design['repeats'], 'repeat')} x "
        f"{plural(design['seeds'], 'training seed')} per split (master seed {design['seed']}); each training "
        f"fold gives {design.get('val_fraction', 0):g} of itself to an inner validation part, which alone "
        f"chose the checkpoint (rule {config.get('select')}) and the operating point; the test fold decided "
        "nothing"
    )
    if design.get("nested"):
        text += (
            f"; hyper-parameters chosen by nested cross-validation ({design.get('inner_folds')} inner folds)"
        )
    if design.get("plan_digest"):
        text += f"; split plan digest {design['plan_digest'][:16]}"
    holdout = run.get("holdout")
    if holdout:
        text += f"; a hold-out set of {holdout.get('n_samples')} samples never entered any fold"
    return text


def _sample_size(report) -> str:
    name = metric_label(report.metric)
    if not report.comparisons:
        return "no variant compared: no sample-size rationale for a comparison"
    parts = [
        (
            f"{c.variant}: this design detects a true Δ{name} of {number(c.mde)} with 80% power"
            if math.isfinite(c.mde)
            else f"{c.variant}: no true Δ{name} reaches 80% power with this design"
        )
        + " (projected from the run's variance components; smallest effect of interest "
        + f"{c.advice.min_effect:g})"
        for c in report.comparisons
    ]
    return "; ".join(parts) + " (see the design advice in the verdict)"


def _models(results, config) -> str:
    models = "; ".join(
        f"{m['name']} ({m['role']}, {m['origin']})"
        + (f", hyper-parameters {m['hyperparams']}" if m["hyperparams"] else "")
        for m in results.models
    )
    recipe = ", ".join(
        f"{key} {config[key]}"
        for key in (
            "backbone",
            "weights",
            "epochs",
            "batch_size",
            "lr",
            "weight_decay",
            "class_weight",
            "augment",
        )
        if key in config
    )
    return f"{models}; recipe: {recipe}"


def _seeds(report) -> str:
    if report.n_seeds < 2:
        return "one training seed per split: seed robustness not measured (run with --seeds 2 or more)"
    lines = []
    if report.noise is not None:
        lines.append(noise_sentence(report.noise, report.baseline, report.metric, report.n_seeds))
    if report.aa is not None:
        lines.append(aa_sentence(report))
    return " ".join(lines) or f"{report.n_seeds} training seeds per split"


def _performance(report) -> str:
    name = metric_label(report.metric)
    verdicts = "; ".join(
        f"{c.variant}: Δ{name} {signed(c.ttest.mean)} [{signed(c.ttest.low)}, {signed(c.ttest.high)}] "
        f"({c.verdict})"
        for c in report.comparisons
    )
    return "every metric with its corrected 95% interval over the folds (Metrics section)" + (
        f"; {verdicts}" if verdicts else ""
    )


def _calibration(clinical) -> str:
    parts = []
    for model, row in clinical.calibration.per_model.items():
        slope, intercept = row["cal_slope"], row["cal_intercept"]
        parts.append(
            f"{model}: slope {number(slope[0])} [{number(slope[1])}, {number(slope[2])}], intercept "
            f"{number(intercept[0])} [{number(intercept[1])}, {number(intercept[2])}]"
        )
    text = "; ".join(parts)
    if clinical.recalibrated:
        text += f" (after {clinical.recalibrated} recalibration fitted on validation predictions)"
    if clinical.weighting_note:
        text += ". Trained with class weights: the probabilities carry the reweighting"
    return text


def _utility(clinical) -> str:
    return (
        f"decision curve (figure) and net benefit at the pre-declared thresholds "
        f"{', '.join(f'{t:g}' for t in clinical.nb_thresholds)} with paired differences (Clinical view)"
    )


def _operating(clinical) -> str:
    chosen = "; ".join(
        f"{model} median threshold {median:.2f} (range {low:.2f}-{high:.2f})"
        for model, (median, low, high) in clinical.thresholds.items()
    )
    return (
        f"{clinical.operating_rule}, chosen on each job's validation predictions and applied to its test "
        f"fold" + (f"; {chosen}" if chosen else "; not available for this run (no validation predictions)")
    )


def _failure_analysis(cases, *, pictures: bool) -> str:
    lists = [
        f"{variant} vs {cases.baseline}: {plural(len(found), 'test image')} on which they disagree most often"
        for variant, found in cases.discordant.items()
    ]
    lists += [
        f"{model}: {plural(len(found), 'test image')} it gets wrong most confidently"
        for model, found in cases.confidently_wrong.items()
    ]
    shown = "with their images" if pictures else "without images (the run folder keeps no thumbnails)"
    return (
        f"case gallery (Discordant and confidently wrong cases), {shown}, true class, each model's mean "
        f"probability and how often it was right: {'; '.join(lists)}. Why these cases fail is for the "
        "authors to say; every out-of-fold prediction: cvkit export --predictions"
    )


def _code(results, run) -> str:
    hashes = "; ".join(f"{m['name']} source hash {m['digest'][:16]}" for m in results.models)
    return f"{hashes}; command: {run.get('command') or '(Python API)'}"


def _software(results, run) -> str:
    environment = {}
    for job in results.jobs:
        try:
            environment = json.loads(job.get("environment") or "{}")
        except ValueError:
            continue
        if environment:
            break
    keys = ("python", "torch", "numpy", "platform", "device", "threads")
    described = ", ".join(f"{k} {environment[k]}" for k in keys if environment.get(k) is not None)
    return f"cvkit {run.get('cvkit_version', 'unknown')}" + (f", {described}" if described else "")
