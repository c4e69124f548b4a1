"""What a Jupyter notebook shows of a run: its verdict and metric tables as HTML, and a live
progress line that needs no widget library (IPython's updatable displays)."""

from __future__ import annotations

import html
import time
import unicodedata

from ..comparison import compare, cv_interval
from ..errors import CvkitError
from ..stats import METRICS, metric_label
from ..verdict_text import confidence_text
from ._format import number, plural, pvalue
from ._narrative import tests_used, verdict_css

# Verdict colours of the HTML report's palette (Okabe-Ito).
VERDICT_COLOUR = dict(
    better="#009E73", worse="#D55E00", negligible="#56B4E9", equivalent="#0072B2", inconclusive="#666666"
)


def visible(text) -> str:
    """``text`` with control and format characters (escapes, bidi overrides, NUL) written as
    Python escapes, so that a name can neither hide characters nor reorder the line around it."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch).startswith("C") else ch
        for ch in str(text)
    )


def escape(text) -> str:
    """``text`` made safe and visible inside HTML."""
    return html.escape(visible(text), quote=True)


def describe_run(results) -> str:
    """One plain line: which models, which design, how many samples, how far, which folder."""
    design = results.run["design"]
    models = results.baseline + (f" vs {', '.join(results.variants)}" if results.variants else "")
    done = sum(j["status"] == "done" for j in results.jobs)
    total = len(results.plan) * design["seeds"] * len(results.models)
    return visible(
        f"{models}; {plural(design['folds'], 'fold')} x {plural(design['repeats'], 'repeat')} x "
        f"{plural(design['seeds'], 'seed')}; {plural(int(results.run['data']['n_samples']), 'sample')}; "
        f"{done}/{total} jobs done; run folder {results.run_dir}"
    )


def results_html(results, *, metric: str = "auc", rope: float | None = None, alpha: float = 0.05) -> str:
    """The run in a notebook: what it is, the verdict per variant (the verdict's test, Holm; ROPE
    None: the metric's own) and the test-fold metrics with their corrected 95% CIs, every user
    string escaped."""
    parts = [
        '<div class="cvkit-results">',
        f"<p><strong>cvkit run</strong>: {escape(describe_run(results))}; "
        f"positive class: {escape(results.positive_name)}</p>",
        _verdict_table(results, metric, rope, alpha),
        _metrics_table(results),
        "</div>",
    ]
    return "\n".join(parts)


def _verdict_table(results, metric, rope, alpha) -> str:
    if not results.variants:
        return "<p>Only the baseline was trained: no variant to compare with it.</p>"
    try:
        report = compare(results, metric=metric, rope=rope, alpha=alpha)
    except CvkitError as exc:
        return f"<p>No verdict yet: {escape(exc)}</p>"
    if not report.comparisons:
        return "<p>No verdict yet: no variant has two folds paired with the baseline.</p>"
    name = metric_label(metric)
    rows = []
    for c in report.comparisons:
        t = c.ttest
        rows.append(
            "<tr>"
            f"<td>{escape(c.variant)}</td>"
            f"<td>{t.mean:+.3f}</td>"
            f"<td>[{t.low:+.3f}, {t.high:+.3f}] {confidence_text(t.confidence)}</td>"
            f"<td>{pvalue(t.pvalue)}</td>"
            f"<td>{pvalue(c.pvalue_holm)}</td>"
            f'<td style="color:{VERDICT_COLOUR[verdict_css(c.verdict)]}"><strong>{c.verdict}</strong></td>'
            "</tr>"
        )
    caption = (
        f"Verdict: does the variant beat {escape(report.baseline)}? Δ{escape(name)} = variant − baseline "
        f"over {plural(report.n_folds, 'fold')} x {plural(report.n_repeats, 'repeat')}, "
        f"{escape(tests_used(report))}, Holm-adjusted p, interval at its Holm step's level, "
        f"ROPE ±{report.rope:g}, alpha {alpha:g}"
    )
    columns = ("variant", f"Δ{name}", "CI (level)", "p", "p (Holm)", "verdict")
    head = "".join(f"<th>{escape(column)}</th>" for column in columns)
    return (
        f'<table class="cvkit-verdict"><caption style="text-align:left">{caption}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _metrics_table(results) -> str:
    if results.metrics.empty:
        return "<p>No finished jobs yet: no metrics to show.</p>"
    models = results.model_names
    head = "".join(f"<th>{escape(m)}{'*' if m == results.baseline else ''}</th>" for m in models)
    rows = []
    for metric in METRICS:
        cells = []
        for model in models:
            mean, low, high = cv_interval(results, model, metric)
            interval = "" if low != low else f" [{number(low)}, {number(high)}]"  # NaN: one fold only
            cells.append(f"<td>{number(mean)}{interval}</td>")
        rows.append(f"<tr><td>{metric_label(metric)}</td>{''.join(cells)}</tr>")
    caption = (
        f"Test-fold metrics, positive class = {escape(results.positive_name)}: mean over folds and "
        "corrected 95% CI (* = baseline; Brier: lower is better)"
    )
    return (
        f'<table class="cvkit-metrics"><caption style="text-align:left">{caption}</caption>'
        f"<thead><tr><th>metric</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


class NotebookProgress:
    """The jobs and epochs of a run as one line in a notebook cell, updated in place.

    Has the interface of :class:`~cvkit.runner.JobProgress` (``start``, ``job_started``,
    ``epoch_done``, ``job_done``); the executors call these in the calling thread. Redraws at most
    every ``interval`` seconds, and once more at the end, which stays in the cell as its record."""

    def __init__(self, *, epochs: int = 0, interval: float = 0.5):
        self.epochs = epochs
        self.interval = interval
        self.total = self.done = self.epochs_done = self.epochs_total = 0
        self.running: dict[str, str] = {}
        self.started = self.drawn = 0.0
        self.handle = None

    def __enter__(self):
        from IPython.display import display

        self.started = time.monotonic()
        self.handle = display(self._bundle(), raw=True, display_id=True)
        return self

    def __exit__(self, *exc):
        self.running.clear()
        self._draw(force=True)

    def start(self, total: int, done: int) -> None:
        self.total, self.done = total, done
        self.epochs_total = (total - done) * self.epochs
        self._draw(force=True)

    def job_started(self, job) -> None:
        self.running[job.key] = f"{job.model} r{job.repeat} f{job.fold}" + (
            f" s{job.seed_index}" if job.seed_index else ""
        )
        self._draw()

    def epoch_done(self, job, record: dict) -> None:
        self.epochs_done += 1
        self._draw()

    def job_done(self, job) -> None:
        self.running.pop(job.key, None)
        self.done += 1
        self._draw(force=True)

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.handle is None or (not force and now - self.drawn < self.interval):
            return
        self.drawn = now
        self.handle.update(self._bundle(), raw=True)

    def _bundle(self) -> dict:
        elapsed = time.strftime("%H:%M:%S", time.gmtime(time.monotonic() - self.started))
        epochs = f"; epochs {self.epochs_done}/{self.epochs_total}" if self.epochs_total else ""
        running = f"; training {', '.join(self.running.values())}" if self.running else ""
        text = f"cvkit: jobs {self.done}/{self.total}{epochs}; elapsed {elapsed}{running}"
        bar = f'<progress value="{self.done}" max="{max(self.total, 1)}"></progress> '
        html_line = f'<div class="cvkit-progress">{bar}{escape(text)}</div>'
        return {"text/plain": visible(text), "text/html": html_line}
