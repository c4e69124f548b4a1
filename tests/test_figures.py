"""Issue 21, item 7: figures a reviewer accepts, and a glossary a clinician can read.

The figures are inspected as matplotlib ``Figure`` objects (``cvkit.report.draw_figures``): axis
labels, tick positions, image data and legends, not pixels. One small run (ResNet-18 against the
attention-head example on 60 tiny images; 2 folds x 2 repeats x 2 seeds, 3 epochs) has every figure."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pytest

import cvkit
from cvkit.report import GLOSSARY, draw_figures, write_reports


@pytest.fixture(scope="module")
def run(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    results = cvkit.evaluate(
        "plugins/fc_attention.py", data=tiny, folds=2, repeats=2, seeds=2, epochs=3, out=out / "run"
    )
    return results, cvkit.compare(results)


@pytest.fixture(scope="module")
def figures(run):
    return {name: figure for name, (_, figure) in draw_figures(*run).items()}


def _plots(figure):
    """The figure's plotting axes (a colour bar's axes is not one)."""
    return [ax for ax in figure.axes if ax.get_visible() and not hasattr(ax, "_colorbar")]


def _legend_texts(figure) -> set[str]:
    legends = [*figure.legends, *(ax.get_legend() for ax in figure.axes if ax.get_legend())]
    return {text.get_text() for legend in legends for text in legend.get_texts()}


def test_the_run_has_every_figure(figures):
    assert set(figures) == {
        "roc",
        "paired_folds",
        "difference",
        "variance",
        "learning_curves",
        "selection_rules",
        "calibration",
        "decision_curve",
        "confusion",
    }


def test_decision_curve_shows_each_model_treat_all_treat_none_and_the_declared_thresholds(run, figures):
    results, report = run
    (ax,) = _plots(figures["decision_curve"])
    assert {"resnet18", "fc_attention", "treat all", "treat none"} <= _legend_texts(figures["decision_curve"])
    assert "net benefit" in ax.get_ylabel() and "threshold" in ax.get_xlabel()
    dotted = sorted(
        line.get_xdata()[0]
        for line in ax.get_lines()
        if line.get_linestyle() == ":" and len(set(line.get_xdata())) == 1
    )
    assert dotted == pytest.approx(list(report.clinical.nb_thresholds))
    curve = next(line for line in ax.get_lines() if line.get_label() == "treat all")
    assert curve.get_ydata() == pytest.approx(report.clinical.decision.treat_all)


def test_every_axis_of_every_figure_is_labelled(figures):
    unlabelled = [
        f"{name} axes {i}: x {ax.get_xlabel()!r}, y {ax.get_ylabel()!r}"
        for name, figure in figures.items()
        for i, ax in enumerate(_plots(figure))
        if not ax.get_xlabel().strip() or not ax.get_ylabel().strip()
    ]
    assert not unlabelled  # main: the variance plot had no y axis, the paired folds no x label


def test_learning_curves_tick_whole_epochs(figures):
    figure = figures["learning_curves"]
    figure.canvas.draw()
    for ax in _plots(figure):
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks  # main: 1.5, 2.5


def test_learning_curves_say_what_the_lines_and_dots_are(figures):
    assert {"training loss", "validation loss", "validation AUC", "selected checkpoint"} <= _legend_texts(
        figures["learning_curves"]
    )


def test_confusion_matrices_are_coloured_by_row_share_and_show_counts(run, figures):
    results, _ = run
    class_counts = np.bincount(results.labels, minlength=len(results.class_names))
    for ax in _plots(figures["confusion"]):
        (image,) = ax.get_images()
        shares = np.asarray(image.get_array())
        assert image.get_clim() == (0, 1)
        np.testing.assert_allclose(shares.sum(axis=1), 1)  # main: raw counts, imbalance sets the colour
        cells = {}
        for text in ax.texts:
            count, share = text.get_text().split("\n")
            row, column = round(text.get_position()[1]), round(text.get_position()[0])
            cells[row, column] = float(count), float(share.rstrip("%")) / 100
        counts = np.array([[cells[i, j][0] for j in range(len(shares))] for i in range(len(shares))])
        # Every sample is predicted once per repeat: a row's counts are its class's size.
        np.testing.assert_allclose(counts.sum(axis=1), class_counts)
        np.testing.assert_allclose(
            [[cells[i, j][1] for j in range(len(shares))] for i in range(len(shares))], shares, atol=0.005
        )
        assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    colour_bars = [ax for ax in figures["confusion"].axes if hasattr(ax, "_colorbar")]
    assert len(colour_bars) == 1 and colour_bars[0].get_ylabel() == "share of the true class"


def test_bar_charts_start_at_zero(figures):
    bars = [
        (name, ax)
        for name, figure in figures.items()
        for ax in _plots(figure)
        if any(type(c).__name__ == "BarContainer" for c in ax.containers)
    ]
    assert {name for name, _ in bars} >= {"selection_rules", "variance"}
    for name, ax in bars:
        assert ax.get_ylim()[0] == 0, name  # main: the selection-rule bars started near 0.6
    selection = figures["selection_rules"].axes[0]
    assert selection.get_ylim()[1] >= 1  # the whole [0, 1] scale of the metric


def test_paired_folds_legend_names_the_colours(run, figures):
    _, report = run
    figure = figures["paired_folds"]
    legends = [*figure.legends, *(ax.get_legend() for ax in figure.axes if ax.get_legend())]
    entries = {
        t.get_text(): h.get_color()
        for legend in legends
        for t, h in zip(legend.get_texts(), legend.legend_handles)
    }
    assert {"variant higher", "baseline higher", "tie"} <= set(entries)  # main: no legend
    (ax,) = _plots(figure)
    comparison = report.comparisons[0]
    for line, (a, b) in zip(ax.get_lines(), zip(comparison.baseline_scores, comparison.variant_scores)):
        expected = "variant higher" if b > a else "baseline higher" if b < a else "tie"
        assert line.get_color() == entries[expected]


def test_variance_plot_puts_each_split_on_a_named_row(run, figures):
    results, report = run
    ax = _plots(figures["variance"])[0]
    (points,) = ax.collections[-1:]
    x, y = np.asarray(points.get_offsets()).T
    metrics = results.metrics
    base = metrics[(metrics.model == report.baseline) & (metrics.seed_index == 0)][report.metric]
    np.testing.assert_allclose(np.sort(x), np.sort(base))
    # main: heights were random jitter; now one row per split, sorted by score, each row named
    np.testing.assert_array_equal(y, np.arange(1, len(x) + 1))
    assert np.all(np.diff(x) >= 0)
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert len(names) == len(x) and all(re.fullmatch(r"repeat \d+, fold \d+", n) for n in names)
    legend = _legend_texts(figures["variance"])
    assert "range one split could show" in legend and "mean over splits (the CV estimate)" in legend
    noise = _plots(figures["variance"])[1]  # --seeds 2: the noise floor panel
    heights = [bar.get_height() for bar in noise.containers[0]]
    np.testing.assert_allclose(heights, [report.noise.split_sd, report.noise.seed_sd])


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.links, self.inside_glossary = set(), [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id") == "glossary":
            self.inside_glossary = True
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href", "").startswith("#"):
            self.links.append((attrs["href"][1:], self.inside_glossary))


def test_html_glossary_defines_each_term_and_the_report_links_to_it(run, tmp_path):
    written = write_reports(*run, ["html", "md"], out_dir=tmp_path)
    html = written["html"].read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(html)
    anchors = {f"glossary-{anchor}" for anchor in GLOSSARY}
    assert anchors <= parser.ids  # main: no glossary
    assert all(target in parser.ids for target, _ in parser.links)  # no link leads nowhere
    linked = {target for target, in_glossary in parser.links if not in_glossary}
    wanted = {"corrected-t", "sampling-within", "rope", "holm", "mde", "mid-p", "bca", "aa"}
    wanted |= {"calibration-slope", "net-benefit", "operating-point"}
    assert {f"glossary-{a}" for a in wanted} <= linked, sorted(anchors - linked)
    terms = {term for term, _, _ in GLOSSARY.values()}
    assert {"corrected t", "ROPE", "Holm", "MDE", "mid-p", "BCa", "A/A check"} <= terms
    markdown = written["md"].read_text(encoding="utf-8")
    glossary = markdown[markdown.index("## Glossary") :]
    assert all(f"**{term}**" in glossary.replace("\\", "") for term in terms)
