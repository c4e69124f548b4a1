"""The first summary in the terminal: the run's set-up, per-model metrics and paired fold differences."""
from __future__ import annotations

import math

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..stats import METRICS

LABELS = dict(auc="AUC", accuracy="Acc", balanced_accuracy="BAcc", sensitivity="Sens",
              specificity="Spec")


def render_summary(results, console: Console | None = None) -> None:
    """Print the header, the per-model metrics table and, per variant, the paired differences."""
    console = console or Console()
    console.print(header(results))
    console.print(metrics_table(results))
    for variant in results.variants:
        console.print(differences_table(results, variant))


def header(results) -> Panel:
    run, data = results.run, results.run["data"]
    design, config = run["design"], run["config"]
    counts = ", ".join(f"{name} {n}" for name, n in data["class_counts"].items())
    mapping = ", ".join(f"{i} = {name}" + (" (positive)" if i == results.positive else "")
                        for i, name in enumerate(results.class_names))
    weights = results.class_weights()
    weight_text = ("none" if weights is None else
                   ", ".join(f"{name} {w:.2f}" for name, w in weights.items()))
    rows = [
        ("data", f"{data['name']}: {data['n_samples']} samples ({counts})"),
        ("", data.get("description", "")),
        ("labels", mapping),
        ("weights", f"class weights in the loss: {weight_text}"),
        ("design", f"{design['folds']} folds x {design['repeats']} repeats x {design['seeds']} seed(s), "
                   f"master seed {design['seed']}, validation {design['val_fraction']:.0%} of each "
                   "training fold"),
        ("training", f"{config['epochs']} epochs, batch {config['batch_size']}, lr {config['lr']:g}, "
                     f"checkpoint by {config['select']}, device {run['device']}"),
        ("run", str(results.run_dir)),
    ]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for name, value in rows:
        if value:
            grid.add_row(name, Text(value))
    return Panel(grid, title="cvkit", title_align="left", expand=False)


def metrics_table(results) -> Table:
    summary = results.summary()
    jobs = ", ".join(f"{name} {int(n)}" for name, n in summary["n_jobs"].items())
    table = Table(title=f"Test-fold metrics, positive class = {results.positive_name}: mean ± sd over "
                        f"folds (jobs: {jobs}); * = baseline", title_justify="left",
                  box=box.SIMPLE_HEAD)
    table.add_column("model", no_wrap=True)
    for metric in METRICS:
        table.add_column(LABELS[metric], justify="right", no_wrap=True)
    for name, row in summary.iterrows():
        mark = "*" if name == results.baseline else ""
        table.add_row(f"{name}{mark}", *(_mean_sd(row[f"{m}_mean"], row[f"{m}_std"]) for m in METRICS))
    return table


def differences_table(results, variant: str) -> Group:
    auc = results.paired_differences(variant, "auc")
    acc = results.paired_differences(variant, "accuracy")
    table = Table(title=f"{variant} minus {results.baseline}, per fold (same split, same seed)",
                  title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("repeat", "fold", f"AUC {results.baseline}", f"AUC {variant}", "Δ AUC", "Δ Acc"):
        table.add_column(column, justify="right")
    for (_, a), (_, b) in zip(auc.iterrows(), acc.iterrows()):
        table.add_row(str(int(a["repeat"])), str(int(a["fold"])), _fmt(a["baseline"]),
                      _fmt(a["variant"]), _signed(a["difference"]), _signed(b["difference"]))
    if len(auc):
        wins = int((auc["difference"] > 0).sum())
        table.add_section()
        table.add_row("mean", "", _fmt(auc["baseline"].mean()), _fmt(auc["variant"].mean()),
                      _signed(auc["difference"].mean()), _signed(acc["difference"].mean()))
        note = Text(f"{variant} has the higher AUC in {wins} of {len(auc)} folds. Fold differences share "
                    "training data and are not independent: read no significance into them here.",
                    style="dim")
        return Group(table, note)
    return Group(table)


def _fmt(x) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.3f}"


def _signed(x) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:+.3f}"


def _mean_sd(mean, sd) -> Text:
    """Mean above, ± sd below in dim: keeps five metrics within 80 columns."""
    if mean is None or math.isnan(mean):
        return Text("–")
    text = Text(f"{mean:.3f}")
    if sd is not None and not math.isnan(sd):
        text.append(f"\n±{sd:.3f}", style="dim")
    return text
