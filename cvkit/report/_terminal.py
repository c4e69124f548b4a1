"""The first summary in the terminal: the run's set-up, per-model metrics and paired fold differences."""
from __future__ import annotations

import math

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
    lines = [
        f"data       {data['name']}: {data['n_samples']} samples ({counts})",
        f"labels     {mapping}",
        f"weights    class weights in the loss: {weight_text}",
        f"design     {design['folds']} folds x {design['repeats']} repeats x {design['seeds']} seed(s), "
        f"master seed {design['seed']}, validation {design['val_fraction']:.0%} of each training fold",
        f"training   {config['epochs']} epochs, batch {config['batch_size']}, lr {config['lr']:g}, "
        f"checkpoint by {config['select']}, device {run['device']}",
        f"run        {results.run_dir}",
    ]
    if data.get("description"):
        lines.insert(1, f"           {data['description']}")
    return Panel(Text("\n".join(lines)), title="cvkit", title_align="left", expand=False)


def metrics_table(results) -> Table:
    summary = results.summary()
    table = Table(title=f"Test-fold metrics, positive class = {results.positive_name} "
                        "(mean ± sd over folds)", title_justify="left")
    table.add_column("model")
    table.add_column("jobs", justify="right")
    for metric in METRICS:
        table.add_column(LABELS[metric], justify="right")
    for name, row in summary.iterrows():
        role = " (baseline)" if name == results.baseline else ""
        table.add_row(f"{name}{role}", str(int(row["n_jobs"])),
                      *(_mean_sd(row[f"{m}_mean"], row[f"{m}_std"]) for m in METRICS))
    return table


def differences_table(results, variant: str) -> Group:
    auc = results.paired_differences(variant, "auc")
    acc = results.paired_differences(variant, "accuracy")
    table = Table(title=f"{variant} minus {results.baseline}, per fold (same split, same seed)",
                  title_justify="left")
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


def _mean_sd(mean, sd) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    return f"{mean:.3f}" if sd is None or math.isnan(sd) else f"{mean:.3f} ± {sd:.3f}"
