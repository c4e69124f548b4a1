"""The recipe grid's report (``--vary``): a table per variant with each cell's verdict, the
overall sentence, and a forest plot of the difference per cell and on average, in the terminal,
``grid.md``, ``grid.html``, ``grid.tex`` and ``grid.json``. Pure functions of the grid's record
(``cvkit.multiverse.grid_record``): plain data, so this stage imports nothing upstream of it.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from .. import escape
from ..files import atomic_write, write_bytes, write_text
from ..stats import metric_label
from ._documents import FORMATS, check_formats

DELTA = "\N{GREEK CAPITAL LETTER DELTA}"


def _figure(figsize):
    """A figure pyplot does not track (no backend chosen, nothing left open), as the run
    report's figures are made."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots()


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _interval(row: dict) -> str:
    return f"{row['delta']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}]"


def _rows(variant: dict) -> list[tuple[str, dict]]:
    return [*((c["label"], c) for c in variant["cells"]), ("grid average", variant["overall"])]


def _notes(record: dict) -> list[str]:
    """What the reader must know before the tables: the pre-registered plan the grid was run
    under, and cells that trained identically (counted once)."""
    notes = []
    registration = record["registration"]
    if registration is not None:
        notes.append(f"{registration['sentence']} Recipe grid: {record['grid']}.")
    return notes + [f"Warning: {group['message']}." for group in record["identical"]]


def _heterogeneity_line(het: dict) -> str:
    return (
        f"recipe x model: p = {het['pvalue']:.3f} ({het['test']}); variance of "
        f"{DELTA}: recipe x model {het['recipe_x_model_variance']:.2g}, split "
        f"{het['split_variance']:.2g}, within cell {het['residual_variance']:.2g}"
    )


def render_grid(record: dict, console: Console | None = None) -> None:
    """Print each variant's per-cell verdicts (a table that fits 80 columns) and its sentence.

    Parameters
    ----------
    record : dict
        The grid's record (``cvkit.multiverse.grid_record``).
    console : rich.console.Console or None, default=None
        Where to print; None: a new console on standard output.
    """
    console = console or Console()
    label = metric_label(record["metric"])
    for note in _notes(record):
        console.print(escape.rich(note), highlight=False)
    for variant in record["variants"]:
        table = Table(
            title=escape.rich(f"{variant['variant']} vs {variant['baseline']} across recipes"),
            box=box.SIMPLE_HEAD,
            width=min(console.width, 80),
        )
        table.add_column("recipe cell", overflow="fold", ratio=3)
        table.add_column(f"{DELTA}{label} [interval]", no_wrap=True)
        table.add_column("p (Holm)", justify="right", no_wrap=True)
        table.add_column("verdict", overflow="fold", ratio=2)
        for name, row in _rows(variant):
            p_holm = f"{row['pvalue_holm']:.3f}"
            # A space after each comma: a long cell name wraps between its settings.
            shown = escape.rich(name.replace(",", ", "))
            table.add_row(shown, _interval(row), p_holm, escape.rich(row["verdict"]))
        console.print(table)
        if variant["heterogeneity"] is not None:
            console.print(escape.rich(_heterogeneity_line(variant["heterogeneity"])), highlight=False)
        console.print(escape.rich(variant["sentence"]), highlight=False)


def forest_figure(record: dict, index: int = 0):
    """A forest plot of one variant's difference with its interval in each cell and on average.

    Parameters
    ----------
    record : dict
        The grid's record.
    index : int, default=0
        Which variant.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (not tracked by pyplot).
    """
    variant = record["variants"][index]
    rows = _rows(variant)
    figure, ax = _figure((6.4, 0.45 * len(rows) + 1.2))
    for y, (name, row) in enumerate(reversed(rows)):
        overall = name == "grid average"
        colour = "black" if overall else ("tab:green" if row["verdict"] == "better" else "tab:grey")
        ax.errorbar(
            row["delta"],
            y,
            xerr=[[row["delta"] - row["low"]], [row["high"] - row["delta"]]],
            fmt="D" if overall else "o",
            color=colour,
            capsize=3,
        )
    ax.axvline(0, color="tab:red", lw=0.8, ls="--")
    ax.set_yticks(range(len(rows)), [escape.mathtext(name) for name, _ in reversed(rows)])
    difference = f"{variant['variant']} - {variant['baseline']}"
    ax.set_xlabel(escape.mathtext(f"{DELTA}{metric_label(record['metric'])} ({difference})"))
    ax.set_title(escape.mathtext(variant["answer"]), fontsize=9)
    return figure


def grid_markdown(record: dict, figures: list[str]) -> str:
    """The grid report in Markdown: per variant, its sentence, table and forest plot.

    Parameters
    ----------
    record : dict
        The grid's record.
    figures : list of str
        Per variant, the forest plot's file name (relative to the Markdown file).

    Returns
    -------
    str
        The document.
    """
    label = metric_label(record["metric"])
    lines = ["# Does the verdict survive the recipe?", ""]
    for note in _notes(record):
        lines += [escape.markdown(note), ""]
    for variant, figure in zip(record["variants"], figures):
        lines += [f"## {escape.markdown(variant['variant'])} vs {escape.markdown(variant['baseline'])}", ""]
        lines += [f"**{escape.markdown(variant['sentence'])}**", ""]
        lines += [f"| recipe cell | {DELTA}{label} [interval] | p (Holm) | verdict |", "|---|---|---|---|"]
        for name, row in _rows(variant):
            lines.append(
                f"| {escape.markdown(name)} | {_interval(row)} | {row['pvalue_holm']:.3f} | "
                f"{escape.markdown(row['verdict'])} |"
            )
        het = variant["heterogeneity"]
        lines += [
            "",
            "Per-cell intervals and p-values are Holm-adjusted across cells x variants."
            if het is None
            else f"Recipe x model heterogeneity: p = {het['pvalue']:.3f} ({escape.markdown(het['test'])}). "
            "Variance of the difference: "
            f"recipe x model {het['recipe_x_model_variance']:.2g} (beyond the noise of a cell's mean, "
            f"{het['noise_variance']:.2g}), split (shared by every cell) {het['split_variance']:.2g}, "
            f"within cell {het['residual_variance']:.2g}. "
            "Per-cell intervals and p-values are Holm-adjusted across cells x variants.",
            "",
            f"![Forest plot of {escape.markdown(variant['variant'])} across recipes]({figure})",
            "",
        ]
    return "\n".join(lines)


def grid_html(record: dict, pngs: list[bytes]) -> str:
    """The grid report as one self-contained HTML page (figures embedded).

    Parameters
    ----------
    record : dict
        The grid's record.
    pngs : list of bytes
        Per variant, its forest plot as PNG.

    Returns
    -------
    str
        The page.
    """
    label = html.escape(metric_label(record["metric"]))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>cvkit: across recipes</title></head><body>",
        "<h1>Does the verdict survive the recipe?</h1>",
        *(f"<p>{html.escape(note)}</p>" for note in _notes(record)),
    ]
    for variant, png in zip(record["variants"], pngs):
        parts.append(f"<h2>{html.escape(variant['variant'])} vs {html.escape(variant['baseline'])}</h2>")
        parts.append(f"<p><strong>{html.escape(variant['sentence'])}</strong></p>")
        parts.append(
            f"<table><tr><th>recipe cell</th><th>{DELTA}{label} [interval]</th><th>p (Holm)</th>"
            "<th>verdict</th></tr>"
        )
        for name, row in _rows(variant):
            parts.append(
                f"<tr><td>{html.escape(name)}</td><td>{_interval(row)}</td><td>{row['pvalue_holm']:.3f}</td>"
                f"<td>{html.escape(row['verdict'])}</td></tr>"
            )
        parts.append("</table>")
        if variant["heterogeneity"] is not None:
            parts.append(f"<p>{html.escape(_heterogeneity_line(variant['heterogeneity']))}</p>")
        encoded = base64.b64encode(png).decode()
        parts.append(f"<img alt='forest plot' src='data:image/png;base64,{encoded}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def grid_latex(record: dict) -> str:
    """The grid report as booktabs tables for papers: per variant, each cell's and the grid
    average's difference, Holm-adjusted p-value and verdict, its sentence as the caption.

    Parameters
    ----------
    record : dict
        The grid's record.

    Returns
    -------
    str
        The LaTeX source (needs ``\\usepackage{booktabs}``).
    """

    def esc(text) -> str:  # the sentences' Greek Delta as math: a plain LaTeX build has no such glyph
        return escape.latex(text).replace(DELTA, "$\\Delta$")

    label = esc(f"{DELTA}{metric_label(record['metric'])}")
    notes = " ".join(esc(note) for note in _notes(record))
    lines = ["% Generated by cvkit; needs \\usepackage{booktabs}"]
    for variant in record["variants"]:
        lines += [
            "\\begin{table}[t]",
            "\\centering",
            "\\small",
            "\\begin{tabular}{llrl}",
            "\\toprule",
            f"Recipe cell & {label} [interval] & $p$ (Holm) & Verdict \\\\",
            "\\midrule",
        ]
        for name, row in _rows(variant):
            if name == "grid average":
                lines.append("\\midrule")
            lines.append(
                f"{esc(name)} & ${_interval(row)}$ & {row['pvalue_holm']:.3f} & {esc(row['verdict'])} \\\\"
            )
        lines += [
            "\\bottomrule",
            "\\end{tabular}",
            f"\\caption{{{esc(variant['variant'])} vs {esc(variant['baseline'])} across recipes: "
            f"{esc(variant['sentence'])}. Per-cell intervals and $p$-values are Holm-adjusted across cells "
            f"$\\times$ variants.{' ' + notes if notes else ''}}}",
            "\\end{table}",
        ]
    return "\n".join(lines) + "\n"


def write_grid_reports(record: dict, out_dir, formats=FORMATS) -> dict[str, Path]:
    """Write ``grid.json`` and the documents asked for into the grid's folder, each atomically:
    ``grid.html`` (``html``), ``grid.md`` with ``grid-forest-N.png`` (``md``) and ``grid.tex``
    (``latex``), as ``cvkit evaluate --report`` selects a single run's documents.

    ``grid.json`` is written whatever the formats: it is the grid's record of the analysis, as a
    single run's store is written whatever its ``--report``.

    Parameters
    ----------
    record : dict
        The grid's record.
    out_dir : str or path
        The grid's folder.
    formats : sequence of {"html", "md", "latex"}, default=("html", "md", "latex")
        The documents to write; empty: ``grid.json`` alone.

    Returns
    -------
    dict of str to Path
        The files written, by format (``json`` first).

    Raises
    ------
    CvkitError
        An unknown format.
    """
    check_formats(formats)
    out = Path(out_dir)
    written = dict(json=out / "grid.json")
    write_text(written["json"], json.dumps(record, indent=1, allow_nan=False))
    # The forest plots are drawn only for the documents that show them.
    pngs = (
        [_png(forest_figure(record, i)) for i in range(len(record["variants"]))]
        if {"html", "md"} & set(formats)
        else []
    )
    if "html" in formats:
        written["html"] = out / "grid.html"
        write_text(written["html"], grid_html(record, pngs))
    if "md" in formats:
        names = [f"grid-forest-{i + 1}.png" for i in range(len(pngs))]
        for name, png in zip(names, pngs):
            write_bytes(out / name, png)
        written["md"] = out / "grid.md"
        write_text(written["md"], grid_markdown(record, names))
    if "latex" in formats:
        written["latex"] = out / "grid.tex"
        write_text(written["latex"], grid_latex(record))
    return written


def write_grid_predictions(cells, path) -> int:
    """Every cell's predictions in one CSV: one row per (recipe cell, model, repeat, fold, seed,
    sample_id), with the cell's name and each varied setting as columns.

    Parameters
    ----------
    cells : list of (str, dict, Results)
        Each cell's name, its recipe values and its run.
    path : str or path
        The CSV file (replaced atomically).

    Returns
    -------
    int
        Rows written.
    """
    import pandas as pd
    from pandas.api.types import is_numeric_dtype

    frames = []
    for name, recipe, results in cells:
        frame = results.predictions.drop(columns=["sample_idx", "rule"])
        shown = {k: str(v).lower() if isinstance(v, bool) else v for k, v in recipe.items()}
        settings = {"recipe_cell": name, **shown}
        frames.append(frame.assign(**settings)[[*settings, *frame.columns]])
    frame = pd.concat(frames, ignore_index=True)
    # Text cells and headers a spreadsheet would run as a formula, neutralised; numbers untouched.
    text = [column for column in frame.columns if not is_numeric_dtype(frame[column])]
    frame = frame.assign(**{column: frame[column].map(escape.csv_cell) for column in text})
    frame = frame.rename(columns=escape.csv_cell)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", newline="") as f:
        frame.to_csv(f, index=False, float_format="%.10g", lineterminator="\r\n")
    return len(frame)
