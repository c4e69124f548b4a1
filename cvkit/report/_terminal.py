"""The first summary in the terminal: the run's set-up, per-model metrics and paired fold differences."""

from __future__ import annotations

import math

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .. import escape
from ..comparison import cv_interval
from ..stats import METRICS, metric_label
from ..verdict_text import confidence_text
from ._clinical import clinical_notes, clinical_tables
from ._format import number, plural, pvalue, signed
from ._narrative import (
    BOOTSTRAP_METHODS,
    ESTIMANDS,
    aa_sentence,
    friedman_sentence,
    mean_ranks_sentence,
    nested_sentence,
    noise_sentence,
    registration_sentence,
    single_split_sentence,
    verdict_css,
)
from ._serialise import report_record
from ._setup import data_use, holdout_heading


def render_summary(results, console: Console | None = None) -> None:
    """Print the header, the per-model metrics table and, per variant, the paired differences."""
    console = console or Console(emoji=False)
    console.print(header(results))
    console.print(metrics_table(results))
    for variant in results.variants:
        console.print(differences_table(results, variant))


def header(results) -> Panel:
    run, data = results.run, results.run["data"]
    design, config = run["design"], run["config"]
    counts = ", ".join(f"{name} {n}" for name, n in data["class_counts"].items())
    mapping = ", ".join(
        f"{i} = {name}" + (" (positive)" if i == results.positive else "")
        for i, name in enumerate(results.class_names)
    )
    weights = results.class_weights()
    weight_text = "none" if weights is None else ", ".join(f"{name} {w:.2f}" for name, w in weights.items())
    rows = [
        ("data", f"{data['name']}: {data['n_samples']} samples ({counts})"),
        ("", data.get("description", "")),
        ("labels", mapping),
        *data_use(run),
        ("extra", _extra_text(data)),
        ("weights", f"class weights in the loss: {weight_text}"),
        (
            "design",
            f"{plural(design['folds'], 'fold')} x {plural(design['repeats'], 'repeat')} x "
            f"{plural(design['seeds'], 'seed')}, "
            f"master seed {design['seed']}, validation {design['val_fraction']:.0%} of each "
            "training fold",
        ),
        (
            "training",
            f"{plural(config['epochs'], 'epoch')}, batch {config['batch_size']}, lr {config['lr']:g}, "
            f"checkpoint by {config['select']}, device {run['device']}",
        ),
        ("jobs", f"{len(results.jobs)} jobs, {results.training_seconds():.0f} s of training"),
        ("reused", reuse_text(results.jobs)),
        ("run", str(results.run_dir)),
    ]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for name, value in rows:
        if value:
            grid.add_row(name, _text(value))
    for i, caveat in enumerate(results.caveats):  # the warnings shown while the run was made
        grid.add_row("caveats" if i == 0 else "", _text(caveat, style="yellow"))
    return Panel(grid, title="cvkit", title_align="left", expand=False)


def reuse_text(jobs) -> str:
    """How many of the run's jobs were copied from sibling runs of its reports folder, and from
    which (empty when none was)."""
    sources: dict[str, int] = {}
    for job in jobs:
        if job["status"] == "done" and job.get("reused_from"):
            sources[job["reused_from"]] = sources.get(job["reused_from"], 0) + 1
    if not sources:
        return ""
    where = ", ".join(f"{n} from {name}" for name, n in sorted(sources.items(), key=lambda item: -item[1]))
    return f"{sum(sources.values())} of {len(jobs)} jobs reused (identical job keys) from other runs: {where}"


def _extra_text(data) -> str:
    names = data.get("extra_names") or []
    if not names:
        return ""
    missing = data.get("missing_extra", 0)
    imputed = f"; {plural(missing, 'missing value')} imputed within each training fold" if missing else ""
    return f"{plural(len(names), 'extra feature')} ({', '.join(names)}){imputed}"


def metric_intervals(results) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Per model and metric: mean over folds and its corrected 95% CI."""
    return {
        model: {metric: cv_interval(results, model, metric) for metric in METRICS}
        for model in results.model_names
    }


def metrics_table(results) -> Group:
    intervals = metric_intervals(results)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("metric")
    for model in results.model_names:
        table.add_column(
            escape.rich(model) + ("*" if model == results.baseline else ""), justify="right", no_wrap=True
        )
    for metric in METRICS:
        cells = []
        for model in results.model_names:
            mean, low, high = intervals[model][metric]
            cells.append(
                _two_lines(number(mean), "" if math.isnan(low) else f"[{number(low)}, {number(high)}]")
            )
        table.add_row(metric_label(metric), *cells)
    note = f"Each cell: {ESTIMANDS['cv_interval']} (* = baseline; Brier: lower is better)"
    title = _title(f"Test-fold metrics, positive class = {escape.rich(results.positive_name)}")
    return Group(title, table, Text(note, style="dim"))


def differences_table(results, variant: str) -> Group:
    auc = results.paired_differences(variant, "auc")
    acc = results.paired_differences(variant, "accuracy")
    title = _title(
        f"{escape.rich(variant)} minus {escape.rich(results.baseline)}, per fold (same split, same seed)"
    )
    table = Table(box=box.SIMPLE_HEAD)
    baseline, shown = escape.rich(results.baseline), escape.rich(variant)
    for column in ("repeat", "fold", f"AUC {baseline}", f"AUC {shown}", "Δ AUC", "Δ Acc"):
        table.add_column(column, justify="right")
    for (_, a), (_, b) in zip(auc.iterrows(), acc.iterrows()):
        table.add_row(
            str(int(a["repeat"])),
            str(int(a["fold"])),
            number(a["baseline"]),
            number(a["variant"]),
            signed(a["difference"]),
            signed(b["difference"]),
        )
    if len(auc):
        wins = int((auc["difference"] > 0).sum())
        table.add_section()
        table.add_row(
            "mean",
            "",
            number(auc["baseline"].mean()),
            number(auc["variant"].mean()),
            signed(auc["difference"].mean()),
            signed(acc["difference"].mean()),
        )
        note = _text(
            f"{variant} has the higher AUC in {wins} of {len(auc)} folds. Fold differences share "
            "training data and are not independent: read no significance into them here.",
            style="dim",
        )
        return Group(title, table, note)
    return Group(title, table)


VERDICT_STYLE = dict(
    better="bold green",
    worse="bold red",
    negligible="bold blue",
    equivalent="bold cyan",
    inconclusive="bold yellow",
)


def render_comparison(report, console: Console | None = None, *, details: bool = False) -> None:
    """Print the comparison table, the sample-level evidence, the verdicts and the checks; with
    ``details``, the clinical tables too (calibration, net benefit, operating point)."""
    console = console or Console(emoji=False)
    if report.registration is not None:
        exploratory = report.registration.status == "exploratory"
        console.print(
            _text(registration_sentence(report.registration), "bold yellow" if exploratory else "bold")
        )
    if report.comparisons:
        console.print(comparison_table(report))
        console.print(sample_tests_table(report))
    if report.selection and report.comparisons:
        console.print(selection_table(report))
    if report.holdout:
        console.print(holdout_table(report))
    if details and getattr(report, "clinical", None) is not None:
        for block in clinical_blocks(report.clinical):
            console.print(block)
    for c in report.comparisons:
        console.print(verdict_panel(c))
    console.print(checks_panel(report))


def comparison_table(report) -> Group:
    name = metric_label(report.metric)
    record = report_record(report)
    title = _title(
        f"Does the variant beat {escape.rich(report.baseline)}? Δ{name} = variant - baseline",
        f"over {plural(report.n_folds, 'fold')} x {plural(report.n_repeats, 'repeat')} "
        f"by the {record['verdict_tests']},",
        f"alpha {report.alpha:g}, Holm over {plural(len(report.comparisons), 'variant')}; "
        f"Bayes: P(better/equivalent/worse), ROPE ±{report.rope:g}",
        *([f"positive class: {escape.rich(report.positive)}"] if report.positive else []),
    )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("variant", overflow="fold")
    for column in (f"Δ{name}\nCI (level)", "p\nHolm", "P(v>b)\ndescr.", "Bayes\n>/=/<"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for c in record["comparisons"].values():
        t, bayes = c["verdict_test"], c["bayesian"]
        table.add_row(
            escape.rich(c["variant"]),
            _two_lines(
                f"{c['mean_difference']:+.3f}",
                f"[{_compact(t['ci_low'])},{_compact(t['ci_high'])}] {confidence_text(t['confidence'])}",
            ),
            _two_lines(pvalue(t["pvalue"]), pvalue(t["pvalue_holm"])),
            f"{c['prob_outperform']['statistic']:.2f}",
            f"{_short(bayes['p_better'])}/{_short(bayes['p_equivalent'])}/{_short(bayes['p_worse'])}",
            Text(c["verdict"], style=VERDICT_STYLE[c["verdict_class"]]),
        )
    notes = [
        f"Δ: {ESTIMANDS['verdict']}.",
        f"CI: {ESTIMANDS['interval']}.",
        f"Test: {ESTIMANDS['verdict_test']}.",
        f"P(v>b): {ESTIMANDS['prob_outperform']}.",
    ]
    return Group(title, table, Text("\n".join(notes), style="dim"))


def sample_tests_table(report) -> Group:
    name = metric_label(report.metric)
    title = _title("Sample-level tests on each repeat's out-of-fold predictions (first seed)")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("variant", overflow="fold")
    for column in ("repeat", "McNemar b/c", "mid-p", "DeLong ΔAUC", "p"):
        table.add_column(column, justify="right", no_wrap=True)
    lines = []
    for c in report.comparisons:
        for i, s in enumerate(c.sample_tests):
            table.add_row(
                escape.rich(c.variant) if i == 0 else "",
                str(s.repeat),
                f"{s.mcnemar.b}/{s.mcnemar.c}",
                pvalue(s.mcnemar.pvalue),
                f"{s.delong.difference:+.3f}",
                pvalue(s.delong.pvalue),
            )
        if c.bootstrap is not None:
            b = c.bootstrap
            lines.append(
                f"{c.variant}: paired stratified bootstrap over samples, Δ{name} {b.estimate:+.3f} "
                f"[{b.low:+.3f}, {b.high:+.3f}] ({BOOTSTRAP_METHODS[b.method]}, {b.n_resamples} resamples)"
            )
    lines.append(f"Bootstrap Δ: {ESTIMANDS['bootstrap']}. {ESTIMANDS['sample_tests']}.")
    lines.append(
        "McNemar, DeLong and the bootstrap compare two fitted models on these samples and ignore "
        "training-seed variance (two seeds of one model often differ significantly): supporting "
        "evidence, never the verdict."
    )
    return Group(title, table, _text("\n".join(lines), style="dim"))


def selection_table(report) -> Group:
    name = metric_label(report.metric)
    title = _title(f"Checkpoint selection rule: mean {name} on the outer test folds, and Δ with p")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("rule")
    table.add_column(escape.rich(report.baseline), justify="right")
    variants = [c.variant for c in report.comparisons]
    for variant in variants:
        table.add_column(escape.rich(variant), justify="right", no_wrap=True)
    for entry in report.selection:
        cells = [number(entry["means"].get(report.baseline))]
        for variant in variants:
            mean = entry["means"].get(variant)
            t = entry["comparisons"].get(variant)
            text = Text(number(mean))
            if t:
                text.append(f"  Δ{t['mean']:+.3f} p={pvalue(t['pvalue'])}", style="dim")
            cells.append(text)
        table.add_row(entry["rule"], *cells)
    return Group(title, table)


def holdout_table(report) -> Group:
    name = metric_label(report.metric)
    title = _title(f"{holdout_heading(report.holdout)} beside the cross-validation estimate of {name}")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("model", "CV mean\n95% CI", "hold-out\n95% CI", "fold models\nmean ± sd", "gap\np Holm"):
        table.add_column(column, justify="left" if column == "model" else "right", no_wrap=column != "model")
    for h in report.holdout:
        table.add_row(
            escape.rich(h["model"]),
            _two_lines(number(h["cv_mean"]), f"[{number(h['cv_low'])}, {number(h['cv_high'])}]"),
            _two_lines(number(h["score"]), f"[{number(h['low'])}, {number(h['high'])}]"),
            f"{number(h['fold_model_mean'])} ± {number(h['fold_model_sd'])}",
            _two_lines(signed(h["gap"]), pvalue(h["gap_pvalue_holm"])),
        )
    return Group(title, table, Text(f"Hold-out: {ESTIMANDS['holdout']}.", style="dim"))


def clinical_blocks(clinical) -> list[Group]:
    """The clinical tables, each cell a value over its interval with the leading zeros dropped
    (two lines, so that four metrics fit 80 columns); the chosen thresholds and the notes on
    class weighting and calibration go under the tables as lines."""
    blocks, said = [], set()
    for i, t in enumerate(clinical_tables(clinical)):
        columns, rows = t.columns, t.rows
        lines = [] if t.note in said else [f"{t.note}."]  # the per-class tables share theirs
        said.add(t.note)
        if columns and columns[-1] == "threshold":  # a fifth column would not fit: one line per model
            lines += [
                f"threshold of {label}: {top} {bottom}"
                for label, cells in rows
                if cells[-1][0]
                for top, bottom in [cells[-1]]
                if bottom
            ]
            columns, rows = columns[:-1], tuple((label, cells[:-1]) for label, cells in rows)
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("", overflow="fold", max_width=12)
        for column in columns:
            table.add_column(
                escape.rich(column), justify="right", overflow="fold", min_width=min(len(column), 11)
            )
        for label, cells in rows:
            table.add_row(_text(label), *(_two_lines(top, _narrow(bottom)) for top, bottom in cells))
        lines += clinical_notes(clinical) if i == 0 else []
        blocks.append(Group(_title(escape.rich(t.title)), table, _text("\n".join(lines), style="dim")))
    return blocks


def _narrow(interval: str) -> str:
    """``[-0.881, -0.477] p 0.079`` as ``[-.881,-.477]`` over ``p 0.079``."""
    import re

    compact = re.sub(r"(?<=[\[,+-])0\.", ".", interval.replace(", ", ","))
    return compact.replace("] p ", "]\np ")


def verdict_panel(c) -> Panel:
    title = _text(f"{c.variant} vs {c.baseline}: ")
    title.append(c.verdict.upper(), style=VERDICT_STYLE[verdict_css(c.verdict)])
    return Panel(_text(c.paragraph), title=title, title_align="left")


def checks_panel(report) -> Panel:
    lines = [single_split_sentence(report)]
    if report.noise is not None:
        lines.append(noise_sentence(report.noise, report.baseline, report.metric, report.n_seeds))
    if report.aa is not None:
        lines.append(aa_sentence(report))
    elif report.n_seeds < 2:
        lines.append("No A/A check or seed noise floor: run with --seeds 2 or more to measure them.")
    lines += [nested_sentence(model, entry) for model, entry in report.nested.items()]
    if report.mean_ranks:
        lines.append(mean_ranks_sentence(report))
    text = _text("\n".join(lines))
    for warning in report.warnings:
        text.append(escape.printable(f"\nwarning: {warning}", newlines=True), style="yellow")
    return Panel(text, title="Calibration and caveats", title_align="left")


def _title(*lines: str) -> Text:
    """A table's title (rich markup) printed above it, not as its ``title``: rich wraps a title to
    the table's width, which splits "(first seed)" or "3 repeats" across lines. Each of ``lines``
    is a phrase that starts a new line; the console wraps only what is wider than itself."""
    return Text.from_markup("\n".join(lines), style="table.title", justify="left", emoji=False)


def _text(text: str, style: str = "") -> Text:
    """A user string shown as it is: no markup parsed, control characters written out."""
    return Text(escape.printable(text, newlines=True), style=style)


def render_ranking(ranking, console: Console | None = None) -> None:
    """Friedman/Nemenyi over runs on different data sets: the scores per data set and the test."""
    console = console or Console()
    name = metric_label(ranking.metric)
    title = _title(f"Mean {name} over folds, one run per data set (blocks of the Friedman test)")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("data set (run)", overflow="fold")
    for model in ranking.models:
        table.add_column(escape.rich(model), justify="right", no_wrap=True)
    for data_set, run, row in zip(ranking.data_sets, ranking.runs, ranking.scores):
        table.add_row(escape.rich(f"{data_set} ({run})"), *(number(x) for x in row))
    table.add_section()
    table.add_row("mean rank", *(f"{r:.2f}" for r in ranking.friedman.mean_ranks))
    console.print(Group(title, table))
    console.print(_text(friedman_sentence(ranking)))


def render_plan(plan, console: Console | None = None, *, jobs: int = 1) -> None:
    """Print a design plan: its designs, the recommendation, and the sequential designs.

    One row per design (power for the smallest effect, the smallest difference detected with the
    target power, trainings, expected time with ``jobs`` at once) and the recommendation in one
    sentence; then the sequential designs, when the plan has them.

    Parameters
    ----------
    plan : DesignPlan
        The plan (``cvkit.planning.plan_from_run`` or ``plan_from_priors``).
    console : rich.console.Console or None, default=None
        Where to print; None: a new console on standard output.
    jobs : int, default=1
        Jobs run at once, which the expected training time is divided by.
    """
    console = console or Console(emoji=False)
    effect = f"{plan.min_effect:.3g} {metric_label(plan.metric)}"
    counts = ", ".join(f"{n} {name}" for name, n in plan.class_counts.items())
    title = _title(
        f"Designs for {effect}, power {100 * plan.target_power:.0f}% at alpha "
        f"{plan.alpha_per_test:.3g} per variant",
        f"from {plan.source}; {plan.n_samples} samples" + (f" ({counts})" if counts else ""),
    )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("folds x repeats x seeds", no_wrap=True)
    table.add_column("samples", justify="right", no_wrap=True)
    table.add_column("power", justify="right", no_wrap=True)
    table.add_column("detects", justify="right", no_wrap=True)
    table.add_column("trainings", justify="right", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    for d in plan.designs:
        mark = " <" if d == plan.recommended else ""
        style = "bold" if mark else ("" if d.reaches else "dim")
        table.add_row(
            Text(f"{d.n_folds} x {d.n_repeats} x {d.n_seeds}{mark}", style=style),
            str(d.n_samples),
            f"{100 * d.power:.0f}%",
            number(d.detectable) if math.isfinite(d.detectable) else "none",
            str(d.trainings),
            "?" if d.seconds is None else _duration(d.seconds / jobs),
        )
    console.print(Group(title, table))
    note = (
        "< recommended. detects: the smallest true difference found with the target power. "
        f"Planned for {plan.planned_for}, the noisiest comparison; test: {plan.method}. "
        + ("Time: training, one job at a time." if jobs == 1 else f"Time: training, {jobs} jobs at once.")
    )
    if plan.seconds_per_split is None:
        note += " No time: plan from a run, or pass --seconds-per-job."
    console.print(_text(note, "dim"))
    console.print(_text(plan.sentence))
    if plan.sequential:
        first = plan.sequential[0]
        title = _title(
            f"Sequential (--until-decided): {first.n_folds} folds x {plural(first.n_seeds, 'seed')}, a look "
            "after 2, 3, ... repeats"
        )
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for name in ("--max-repeats", "power", "repeats (mean)", "trainings (mean)", "at most"):
            table.add_column(name, justify="right", no_wrap=True)
        for d in plan.sequential:
            table.add_row(
                str(d.max_repeats), f"{100 * d.power:.0f}%", f"{d.expected_repeats:.1f}",
                f"{d.expected_trainings:.0f}", str(d.max_trainings),
            )  # fmt: skip
        console.print(Group(title, table))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _two_lines(top: str, bottom: str) -> Text:
    text = Text(top)
    if bottom:
        text.append(f"\n{bottom}", style="dim")
    return text


def _compact(x: float) -> str:
    """A signed difference without its leading zero: +.070, -1.20."""
    return f"{x:+.3f}".replace("0.", ".", 1) if abs(x) < 1 else f"{x:+.2f}"


def _short(p: float) -> str:
    """A probability in three characters: .36, 1.0, 0.0."""
    return "1.0" if p >= 0.995 else f"{p:.2f}".lstrip("0") if p >= 0.005 else "0.0"


def render_verification(verification, console: Console | None = None) -> None:
    """One row per job trained again; under the table, what to suspect for each job that differs."""
    console = console or Console(emoji=False)
    rule = "bit for bit" if verification.tolerance == 0 else f"within {verification.tolerance:g}"
    title = _title(f"jobs trained again, predictions compared {rule}")
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("model", "repeat", "fold", "seed", "values", "result"):
        table.add_column(
            column, justify="right" if column in ("repeat", "fold", "seed", "values") else "left"
        )
    for check in verification.checks:
        job = check.job
        result = (
            Text("identical", style="green")
            if check.identical
            else Text(f"{check.n_different} differ, largest by {check.max_difference:.3g}", style="red")
        )
        table.add_row(
            escape.rich(job.model),
            str(job.repeat),
            str(job.fold),
            str(job.seed_index),
            str(check.n_values),
            result,
        )
    console.print(Group(title, table))
    for check in verification.checks:
        if not check.identical:
            job = check.job
            console.print(
                _text(f"{job.model} repeat {job.repeat} fold {job.fold}: {check.suspect}"), soft_wrap=True
            )
