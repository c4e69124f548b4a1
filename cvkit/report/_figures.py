"""The report's figures, drawn with matplotlib from a run's results and its comparison report.

One consistent style: the Okabe-Ito colour-blind-safe palette, labelled axes with units, and
every figure returned as PNG bytes so that HTML can embed it and Markdown can link it.
"""

from __future__ import annotations

import io
import os
import tempfile
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import escape
from ..stats import metric_label, predict_classes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
WIN, LOSS, TIE = "#009E73", "#D55E00", "#999999"


def draw_figures(results, report) -> dict[str, tuple[str, Figure]]:
    """Every figure that applies to this run, as matplotlib ``Figure`` objects: name -> (caption,
    figure), for a notebook to show or restyle.

    Each figure has a canvas of its own (Agg), in a style set for these figures only: the caller's
    matplotlib backend, pyplot figures and rcParams stay as they were (a notebook's too), and pyplot
    does not track the figures, so nothing is left open."""
    import matplotlib

    with matplotlib.rc_context(_style()):
        return _draw(results, report)


def render_figures(results, report) -> dict[str, tuple[str, bytes]]:
    """Every figure that applies to this run, drawn to PNG: name -> (caption, PNG bytes)."""
    import matplotlib

    with matplotlib.rc_context(_style()):
        return {name: (caption, _png(figure)) for name, (caption, figure) in _draw(results, report).items()}


def _style() -> dict:
    import matplotlib

    return {
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO),
        "figure.dpi": 100,
    }


class _Canvas:
    """The one pyplot call the figure builders make, ``subplots``, on a figure that pyplot does
    not track (so no backend is chosen and nothing is left open)."""

    @staticmethod
    def subplots(nrows=1, ncols=1, *, figsize=None, layout=None, **options):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=figsize, layout=layout)
        FigureCanvasAgg(figure)
        return figure, figure.subplots(nrows, ncols, **options)

    @staticmethod
    def subfigures(nrows=1, *, figsize=None):
        """A figure of ``nrows`` stacked sub-figures (each its own title and axes), untracked."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=figsize, layout="constrained")
        FigureCanvasAgg(figure)
        return figure, figure.subfigures(nrows, 1, squeeze=False)[:, 0]


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _draw(results, report) -> dict[str, tuple[str, Figure]]:
    plt = _Canvas
    # With three or more classes, the positive-class figures are one-vs-rest: say so in the name.
    one_vs_rest = (
        f"one-vs-rest: {results.positive_name} against the {len(results.class_names) - 1} other classes; "
        if len(results.class_names) > 2
        else ""
    )
    figures = {}
    builders = [
        (
            "roc",
            f"ROC curves ({one_vs_rest}out-of-fold predictions, mean over repeats, shaded: 95% "
            "bootstrap band over samples)",
            _roc,
        ),
        (
            "paired_folds",
            "Paired per-fold scores: each line joins the baseline and the variant on the same "
            "split and seed, coloured by which won",
            _paired_folds,
        ),
        (
            "difference",
            "Per-fold differences with the corrected CI of their mean at the level of the variant's "
            "Holm step (it excludes 0 exactly when Holm rejects), zero and the ROPE",
            _difference,
        ),
        (
            "variance",
            "The baseline's score on each split (first seed), sorted: the shaded range is what a "
            "single train/test split could have shown, the line the cross-validated mean; beside it, "
            "the standard deviation between splits and between training seeds (with --seeds 2 or more)",
            _variance,
        ),
        (
            "learning_curves",
            "Learning curves per fold: training and validation loss, validation AUC; dots "
            "mark the selected checkpoint",
            _learning_curves,
        ),
        (
            "selection_rules",
            "Outer-test score under each checkpoint-selection rule (mean and sd over folds)",
            _selection_rules,
        ),
        (
            "calibration",
            f"Reliability diagram of the positive-class probability ({one_vs_rest}pooled out-of-fold)",
            _calibration,
        ),
        (
            "decision_curve",
            f"Decision curve ({one_vs_rest}net benefit of treating when the probability of the positive "
            "class is at least the threshold): mean over test folds, shaded its pointwise corrected 95% "
            "band; treat all and treat none for reference; dotted lines: the pre-declared thresholds",
            _decision_curve,
        ),
        (
            "per_class",
            "Each class against the rest (one-vs-rest; three or more classes): AUC, sensitivity and "
            "specificity per class and their macro average (unweighted mean over classes), mean over "
            "test folds with the corrected 95% interval",
            _per_class,
        ),
        (
            "confusion",
            "Confusion matrices (predicted class: the same rule as every class-based metric), pooled "
            "over folds: each cell gives the count (mean over repeats) and its share of the true "
            "class; the colour is that share, so that class imbalance does not set it",
            _confusion,
        ),
    ]
    for name, caption, build in builders:
        figure = build(plt, results, report)
        if figure is not None:
            figures[name] = (caption, figure)
    return figures


CD_CAPTION = (
    "Critical-difference diagram over data sets (one run each): mean rank (1 = best); models joined "
    "by a bar are within the Nemenyi critical difference (alpha 0.05)"
)


def write_cd_diagram(ranking, path) -> Path:
    """Draw the critical-difference diagram of a ranking over data sets into ``path`` (PNG),
    written atomically: a temporary file in the same folder, then os.replace."""
    import matplotlib

    with matplotlib.rc_context(_style()):
        png = _png(_critical_difference(_Canvas, ranking))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(png)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def contact_sheet_caption(cases: dict) -> str:
    """The Markdown caption of the case gallery's contact sheet (``cases``: the documents' gallery
    context)."""
    return (
        "Contact sheet of the cases in the tables below: each image with its sample id, true class and, "
        f"per model, {cases['probability']} (P) and how many of its predictions were right"
    )


def render_contact_sheet(cases: dict) -> bytes | None:
    """The case gallery's thumbnails, one row per list, as PNG bytes; None when no case has a
    thumbnail. ``cases`` is the documents' gallery context (``case_gallery_context``)."""
    import matplotlib

    sections = [s for s in cases["sections"] if any(c.thumbnail is not None for c in s.cards)]
    if not sections:
        return None
    with matplotlib.rc_context(_style()):
        return _png(_contact_sheet(_Canvas, sections))


def _contact_sheet(plt, sections):
    columns = max(len(s.cards) for s in sections)
    lines = max(len(s.models) for s in sections) + 2  # true class, one line per model, disagreement
    row_height = 1.6 + 0.13 * lines + 0.35
    fig, rows = plt.subfigures(len(sections), figsize=(1.8 * columns, row_height * len(sections)))
    for row, section in zip(rows, sections):
        # The row's title over its own strip of the grid, so that the layout keeps it clear of the
        # sample ids above each image.
        title, images = row.subfigures(2, 1, height_ratios=(0.3, row_height - 0.3))
        title.text(0.0, 0.1, escape.mathtext(section.title), fontsize=9, fontweight="bold", va="bottom")
        axes = images.subplots(1, columns, squeeze=False)[0]
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        for ax, card in zip(axes, section.cards):
            if card.thumbnail is not None:
                grey = card.thumbnail.ndim == 2
                ax.imshow(
                    card.thumbnail, cmap="gray" if grey else None, vmin=0, vmax=255, interpolation="nearest"
                )
            else:
                ax.text(0.5, 0.5, "no image", ha="center", va="center", color=TIE, transform=ax.transAxes)
            ax.set_title(escape.mathtext(_clip(card.sample_id, 24)), fontsize=7)
            caption = [f"true {_clip(card.label, 22)}"]
            caption += [f"{_clip(model, 14)}: P {p}, right {right}" for model, p, right in card.models]
            if card.disagreement:
                caption.append(f"one right: {card.disagreement}")
            ax.set_xlabel("\n".join(map(escape.mathtext, caption)), fontsize=6.5, linespacing=1.15)
    return fig


def _clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, an ellipsis marking the cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _positive_scores(results, model):
    """(repeats x samples) positive-class probabilities of the first seed, and the label mask."""
    p = results.predictions
    rows = p[(p.model == model) & (p.seed_index == 0)]
    table = rows.pivot(index="repeat", columns="sample_idx", values=f"prob_{results.positive_name}").dropna(
        axis=1
    )
    positive = results.labels[table.columns.to_numpy()] == results.positive
    return table.to_numpy(), positive


def _roc(plt, results, report):
    from sklearn.metrics import roc_curve

    grid = np.linspace(0, 1, 101)
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for color, model in zip(OKABE_ITO, results.model_names):
        scores, positive = _positive_scores(results, model)
        if scores.size == 0 or positive.all() or not positive.any():
            continue
        curves = [np.interp(grid, *roc_curve(positive, s)[:2]) for s in scores]
        pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
        band = []
        for _ in range(200):  # stratified resamples of the samples, shared by every repeat
            idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
            band.append(
                np.mean([np.interp(grid, *roc_curve(positive[idx], s[idx])[:2]) for s in scores], axis=0)
            )
        low, high = np.percentile(band, [2.5, 97.5], axis=0)
        ax.fill_between(grid, low, high, color=color, alpha=0.2, linewidth=0)
        ax.plot(grid, np.mean(curves, axis=0), color=color, label=escape.mathtext(model))
    ax.plot([0, 1], [0, 1], color=TIE, linestyle=":", linewidth=1)
    ax.set(
        xlabel="false positive rate (1 - specificity)",
        ylabel="true positive rate (sensitivity)",
        title=f"ROC, positive class: {escape.mathtext(results.positive_name)}",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(loc="lower right", frameon=False)
    return fig


def _paired_folds(plt, results, report):
    from matplotlib.lines import Line2D

    if not report.comparisons:
        return None
    n = len(report.comparisons)
    fig, axes = plt.subplots(1, n, figsize=(max(3.2 * n, 4.2), 4), squeeze=False, layout="constrained")
    for ax, c in zip(axes[0], report.comparisons):
        for a, b in zip(c.baseline_scores, c.variant_scores):
            color = WIN if b > a else LOSS if b < a else TIE
            ax.plot([0, 1], [a, b], color=color, marker="o", markersize=3, linewidth=1, alpha=0.8)
        ax.set_xticks([0, 1], [escape.mathtext(c.baseline), escape.mathtext(c.variant)])
        ax.set_xlim(-0.3, 1.3)
        ax.set(
            xlabel="model (one line per fold)",
            ylabel=f"{metric_label(report.metric)} per fold",
            title=f"{escape.mathtext(c.variant)}: won {c.wins} of {len(c.diffs)}",
        )
    handles = [
        Line2D([], [], color=WIN, marker="o", markersize=3, label="variant higher"),
        Line2D([], [], color=LOSS, marker="o", markersize=3, label="baseline higher"),
        Line2D([], [], color=TIE, marker="o", markersize=3, label="tie"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False, fontsize=8)
    return fig


def _difference(plt, results, report):
    if not report.comparisons:
        return None
    fig, ax = plt.subplots(figsize=(6, 1.4 + 0.7 * len(report.comparisons)), layout="constrained")
    rng = np.random.default_rng(0)
    ax.axvspan(-report.rope, report.rope, color=TIE, alpha=0.2, label=f"ROPE ±{report.rope:g}")
    ax.axvline(0, color="black", linewidth=0.8)
    for row, c in enumerate(report.comparisons):
        jitter = rng.uniform(-0.15, 0.15, len(c.diffs))
        ax.scatter(
            c.diffs,
            row + jitter,
            s=12,
            color=OKABE_ITO[0],
            alpha=0.7,
            zorder=3,
            label="one fold's Δ" if row == 0 else None,
        )
        ax.errorbar(
            c.ttest.mean,
            row,
            xerr=[[c.ttest.mean - c.ttest.low], [c.ttest.high - c.ttest.mean]],
            fmt="D",
            color=OKABE_ITO[5],
            capsize=4,
            zorder=4,
            label="mean Δ and its CI" if row == 0 else None,
        )
    ax.set_yticks(range(len(report.comparisons)), [escape.mathtext(c.variant) for c in report.comparisons])
    ax.set(
        xlabel=f"Δ {metric_label(report.metric)} (variant - {escape.mathtext(report.baseline)})",
        ylabel="variant",
        ylim=(-0.6, len(report.comparisons) - 0.4),
    )
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", frameon=False, fontsize=8, ncol=3)
    return fig


def _variance(plt, results, report):
    metrics = results.metrics
    base = metrics[(metrics.model == report.baseline) & (metrics.seed_index == 0)].dropna(
        subset=[report.metric]
    )
    if base.empty:
        return None
    base = base.sort_values(report.metric, kind="stable")
    scores = base[report.metric].to_numpy()
    panels = 2 if report.noise is not None else 1
    fig, axes = plt.subplots(
        1, panels, figsize=(4.4 * panels, 2.4 + 0.16 * len(scores)), squeeze=False, layout="constrained"
    )
    ax = axes[0][0]
    rows = np.arange(1, len(scores) + 1)
    ax.axvspan(scores.min(), scores.max(), color=OKABE_ITO[5], alpha=0.15, label="range one split could show")
    ax.axvline(scores.mean(), color=OKABE_ITO[5], linewidth=1.5, label="mean over splits (the CV estimate)")
    ax.scatter(scores, rows, color=OKABE_ITO[0], s=14, zorder=3, label="one split (first seed)")
    if len(scores) <= 20:  # name each split; beyond that the names would overlap
        names = [f"repeat {r + 1}, fold {f + 1}" for r, f in zip(base["repeat"], base["fold"])]
        ax.set_yticks(rows, names, fontsize=7)
        ylabel = f"split, sorted by {metric_label(report.metric)}"
    else:
        _integer_ticks(ax.yaxis)
        ylabel = f"split (rank by {metric_label(report.metric)})"
    ax.set(
        xlabel=f"{metric_label(report.metric)} of {escape.mathtext(report.baseline)} on one split",
        ylabel=ylabel,
        ylim=(0.3, len(scores) + 0.7),
        title=f"single-split range {scores.min():.3f} to {scores.max():.3f}",
    )
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", frameon=False, fontsize=7, ncol=3)
    if report.noise is not None:
        ax = axes[0][1]
        n = report.noise
        split_label = "between splits\n(estimated as 0)" if n.split_truncated else "between splits"
        bars = ax.bar(
            [split_label, "training seed"], [n.split_sd, n.seed_sd], color=[OKABE_ITO[0], OKABE_ITO[1]]
        )
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
        ax.set(
            xlabel="source of variation",
            ylabel=f"standard deviation of {metric_label(report.metric)}",
            title=f"{escape.mathtext(report.baseline)}: {n.n_seeds} seeds per split",
        )
        ax.set_ylim(bottom=0)
    return fig


def _learning_curves(plt, results, report):
    from matplotlib.lines import Line2D

    history = results.history
    if history.empty:
        return None
    models = [m for m in results.model_names if m in set(history["model"])]
    jobs = {(j["model"], j["repeat"], j["fold"], j["seed_index"]): j["selected_epoch"] for j in results.jobs}
    fig, axes = plt.subplots(
        len(models), 2, figsize=(8, 0.4 + 2.6 * len(models)), squeeze=False, layout="constrained"
    )
    for row, model in enumerate(models):
        loss_ax, auc_ax = axes[row]
        for key, part in history[history.model == model].groupby(["repeat", "fold", "seed_index"]):
            loss_ax.plot(part["epoch"], part["train_loss"], color=OKABE_ITO[0], alpha=0.35, linewidth=1)
            loss_ax.plot(part["epoch"], part["val_loss"], color=OKABE_ITO[1], alpha=0.35, linewidth=1)
            auc_ax.plot(part["epoch"], part["val_auc"], color=OKABE_ITO[2], alpha=0.35, linewidth=1)
            selected = jobs.get((model, *key))
            chosen = part[part["epoch"] == selected]
            auc_ax.scatter(chosen["epoch"], chosen["val_auc"], color="black", s=10, zorder=3)
        shown = escape.mathtext(model)
        loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss", title=f"{shown}: loss")
        auc_ax.set(xlabel="epoch", ylabel="validation AUC", title=f"{shown}: validation AUC")
        for ax in (loss_ax, auc_ax):
            _integer_ticks(ax.xaxis)
    handles = [
        Line2D([], [], color=OKABE_ITO[0], label="training loss"),
        Line2D([], [], color=OKABE_ITO[1], label="validation loss"),
        Line2D([], [], color=OKABE_ITO[2], label="validation AUC"),
        Line2D([], [], color="black", marker="o", markersize=3, linestyle="", label="selected checkpoint"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, frameon=False, fontsize=8)
    return fig


def _selection_rules(plt, results, report):
    if not report.selection:
        return None
    rules = [e["rule"] for e in report.selection]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    width = 0.8 / len(results.model_names)
    for i, model in enumerate(results.model_names):
        means, sds = [], []
        for rule in rules:
            m = results.rule_metrics(rule)
            values = m[m.model == model][report.metric].dropna()
            means.append(values.mean() if len(values) else np.nan)
            sds.append(values.std() if len(values) > 1 else 0)
        ax.bar(
            np.arange(len(rules)) + i * width,
            means,
            width,
            yerr=sds,
            capsize=2,
            label=escape.mathtext(model),
            color=OKABE_ITO[i % len(OKABE_ITO)],
        )
    ax.set_xticks(np.arange(len(rules)) + width * (len(results.model_names) - 1) / 2, rules)
    ax.set(
        xlabel="checkpoint chosen by",
        ylabel=f"outer-test {metric_label(report.metric)} (mean ± sd over folds)",
    )
    # The whole scale from 0, so that bar heights compare (the metrics lie in [0, 1]).
    ax.set_ylim(0, max(1.0, ax.get_ylim()[1]))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False, fontsize=8, ncol=4)
    return fig


def _calibration(plt, results, report):
    fig, ax = plt.subplots(figsize=(4.2, 4))
    bins = np.linspace(0, 1, 11)
    for color, model in zip(OKABE_ITO, results.model_names):
        scores, positive = _positive_scores(results, model)
        if scores.size == 0:
            continue
        s, y = scores.ravel(), np.tile(positive, len(scores))
        which = np.clip(np.digitize(s, bins) - 1, 0, 9)
        filled = [b for b in range(10) if np.any(which == b)]
        ax.plot(
            [s[which == b].mean() for b in filled],
            [y[which == b].mean() for b in filled],
            marker="o",
            markersize=3,
            color=color,
            label=escape.mathtext(model),
        )
    ax.plot([0, 1], [0, 1], color=TIE, linestyle=":", linewidth=1, label="perfect calibration")
    ax.set(
        xlabel=f"predicted probability of {escape.mathtext(results.positive_name)}",
        ylabel=f"observed share of {escape.mathtext(results.positive_name)}",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(frameon=False, fontsize=8)
    return fig


def _decision_curve(plt, results, report):
    clinical = getattr(report, "clinical", None)
    if clinical is None:
        return None
    curve = clinical.decision
    t = curve.thresholds
    fig, ax = plt.subplots(figsize=(5.2, 4))
    for color, model in zip(OKABE_ITO, curve.mean):
        ax.plot(t, curve.mean[model], color=color, linewidth=1.5, label=escape.mathtext(model))
        if np.isfinite(curve.low[model]).any():
            ax.fill_between(t, curve.low[model], curve.high[model], color=color, alpha=0.15, linewidth=0)
    ax.plot(t, curve.treat_all, color="#555555", linewidth=1, linestyle="--", label="treat all")
    ax.axhline(0, color=TIE, linewidth=1, label="treat none")
    for x in clinical.nb_thresholds:
        ax.axvline(x, color=TIE, linewidth=0.8, linestyle=":")
    top = max(float(np.nanmax(np.concatenate([m for m in curve.mean.values()]))), float(curve.treat_all[0]))
    upper = max(0.6, float(max(clinical.nb_thresholds)) + 0.2)
    ax.set(
        xlabel=f"threshold probability of {escape.mathtext(clinical.positive)}",
        ylabel="net benefit (true positives per patient)",
        xlim=(0, min(upper, 0.99)),
        ylim=(-0.05, max(top, 0.05) * 1.1),
    )
    ax.legend(frameon=False, fontsize=8)
    return fig


def _per_class(plt, results, report):
    clinical = getattr(report, "clinical", None)
    if clinical is None or not clinical.per_class:
        return None
    kinds = list(clinical.per_class)
    fig, axes = plt.subplots(
        1, len(kinds), figsize=(3.4 * len(kinds), 3.6), squeeze=False, layout="constrained"
    )
    for ax, kind in zip(axes[0], kinds):
        table = clinical.per_class[kind]
        models = list(table.per_model)
        width = 0.7 / max(len(models), 1)
        for j, (color, model) in enumerate(zip(OKABE_ITO, models)):
            values = np.array([table.per_model[model][m] for m in table.metrics], dtype=float)
            x = np.arange(len(table.metrics)) + (j - (len(models) - 1) / 2) * width
            low, high = values[:, 0] - values[:, 1], values[:, 2] - values[:, 0]
            ax.errorbar(
                x,
                values[:, 0],
                yerr=np.nan_to_num(np.vstack([low, high])),
                fmt="o",
                markersize=4,
                capsize=2,
                color=color,
                label=escape.mathtext(model),
            )
        ax.set_xticks(
            np.arange(len(table.metrics)),
            [escape.mathtext(table.labels[m]) for m in table.metrics],
            rotation=30,
        )
        ax.axvline(len(table.metrics) - 1.5, color=TIE, linewidth=0.8, linestyle=":")  # classes | macro
        ax.set(xlabel="class (one-vs-rest)", ylabel=metric_label(kind), ylim=(0, 1.02))
    axes[0][0].legend(frameon=False, fontsize=8)
    return fig


def _confusion(plt, results, report):
    p = results.predictions
    names = results.class_names
    models = results.model_names
    # Long class names wrap onto lines of at most 18 characters, and only the first matrix names
    # the rows (they are shared), so that the matrices keep their room.
    ticks = [textwrap.fill(escape.mathtext(name), 18) for name in names]
    label_width = 0.08 * max(len(line) for tick in ticks for line in tick.splitlines())
    fig, axes = plt.subplots(
        1,
        len(models),
        figsize=(3.0 * len(models) + 0.8 + label_width, 3.0 + label_width / 2),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    prob_columns = [f"prob_{c}" for c in names]
    image = None
    for ax, model in zip(axes[0], models):
        rows = p[(p.model == model) & (p.seed_index == 0)]
        if rows.empty:
            ax.axis("off")
            continue
        predicted = predict_classes(rows[prob_columns].to_numpy(), results.positive)
        counts = np.zeros((len(names), len(names)))
        np.add.at(counts, (rows["label_index"].to_numpy(), predicted), 1)
        n_repeats = max(rows["repeat"].nunique(), 1)
        counts /= n_repeats
        # Coloured by the share of each true class (rows sum to 1), so that class imbalance does
        # not set the colour; the cell says the count too.
        totals = counts.sum(axis=1, keepdims=True)
        shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        count_format = "{:.0f}" if n_repeats == 1 else "{:.1f}"
        for (i, j), share in np.ndenumerate(shares):
            ax.text(
                j,
                i,
                f"{count_format.format(counts[i, j])}\n{share:.0%}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if share > 0.5 else "black",
            )
        ax.set_xticks(range(len(names)), ticks, rotation=20)
        ax.set_yticks(range(len(names)), ticks)
        ax.set(xlabel="predicted class", ylabel="true class", title=escape.mathtext(model))
    if image is not None:
        bar = fig.colorbar(image, ax=list(axes[0]), fraction=0.04)
        bar.set_label("share of the true class")
    return fig


def _critical_difference(plt, ranking):
    models, f = ranking.models, ranking.friedman
    order = np.argsort(f.mean_ranks)
    k = len(models)
    fig, ax = plt.subplots(figsize=(6.4, 1.2 + 0.3 * k))
    ax.set_xlim(k + 0.2, 0.8)  # rank 1 on the right, as Demsar draws it
    ax.set_ylim(0, k + 1.5)
    ax.hlines(k + 0.9, 1, 1 + f.critical_difference, color="black", linewidth=2)
    ax.text(1 + f.critical_difference / 2, k + 1.1, f"CD = {f.critical_difference:.2f}", ha="center")
    for row, i in enumerate(order):
        y = k - row - 0.2
        ax.plot([f.mean_ranks[i], f.mean_ranks[i]], [y, k + 0.5], color=TIE, linewidth=0.8)
        ax.plot(f.mean_ranks[i], k + 0.5, "o", color=OKABE_ITO[row % len(OKABE_ITO)])
        ax.text(
            f.mean_ranks[i],
            y - 0.1,
            f"{escape.mathtext(models[i])} ({f.mean_ranks[i]:.2f})",
            ha="center",
            va="top",
            fontsize=8,
        )
    for row, i in enumerate(order):  # bars over groups within the critical difference
        close = [j for j in order if 0 <= f.mean_ranks[j] - f.mean_ranks[i] < f.critical_difference]
        if len(close) > 1:
            ax.hlines(
                k + 0.3 - 0.12 * row,
                f.mean_ranks[i],
                max(f.mean_ranks[j] for j in close),
                linewidth=3,
                color=OKABE_ITO[0],
                alpha=0.6,
            )
    ax.yaxis.set_visible(False)
    for side in ("left", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.spines["top"].set_visible(True)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    _integer_ticks(ax.xaxis)
    ax.set_xlabel("mean rank over data sets (1 = best)")
    ax.set_title(f"Friedman over {f.n_blocks} data sets: p = {f.pvalue:.3f}", pad=28)
    return fig


def _integer_ticks(axis) -> None:
    """Ticks on whole numbers only (epochs, ranks): no "epoch 1.5"."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))
