"""Report documents: a self-contained HTML page, a Markdown page with PNG figures, a LaTeX table.

All three are pure functions of the run's results and its comparison report: ``cvkit report``
regenerates them from the store at any time without training.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

from .. import escape, files
from .._version import __version__
from ..errors import CvkitError
from ..stats import METRICS, metric_label
from ._cases import case_gallery_context
from ._checklist import checklist
from ._clinical import clinical_notes, clinical_tables
from ._figures import contact_sheet_caption, render_contact_sheet, render_figures
from ._format import is_number, number, plural, pvalue, signed
from ._narrative import BOOTSTRAP_METHODS, GLOSSARY, nested_choices_text, nested_sentence
from ._serialise import report_record
from ._setup import data_use, holdout_heading
from ._terminal import metric_intervals, reuse_text

FORMATS = ("html", "md", "latex")
CONTACT_SHEET = "cases"  # the case gallery's contact sheet, figures/cases.png beside the Markdown
CHECKLIST_NOTE = (
    "The topics of the TRIPOD+AI (2024) and CLAIM (2024) checklists that this run answers, answered "
    "from it; then the topics only the authors can answer. Topics are named, not numbered: check the "
    "item numbers against the checklist version you report to."
)


def check_formats(formats) -> None:
    """Refuse a report format cvkit does not write, in one line (before any training, when the
    command line asks for it).

    Parameters
    ----------
    formats : sequence of str
        The formats asked for (``--report``'s, split at commas).

    Raises
    ------
    CvkitError
        A format not in ``FORMATS``.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise CvkitError(f"--report {','.join(unknown)}: choose from {', '.join(FORMATS)}")


def write_reports(results, report, formats=FORMATS, out_dir=None) -> dict[str, Path]:
    """Write a run's reports: HTML, Markdown (with its figures) and a LaTeX table.

    Parameters
    ----------
    results : Results
        The run.
    report : ComparisonReport
        Its comparison (:func:`cvkit.compare`).
    formats : sequence of {"html", "md", "latex"}, default=("html", "md", "latex")
        The documents to write.
    out_dir : str, path or None, default=None
        Where to write them; None: the run folder.

    Returns
    -------
    dict of str to Path
        Each written format's file.

    Raises
    ------
    CvkitError
        An unknown format, or a folder that cannot be written.
    """
    check_formats(formats)
    out_dir = Path(out_dir or results.run_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        context = document_context(results, report)
        figures = render_figures(results, report) if {"html", "md"} & set(formats) else {}
        written = {}
        if "html" in formats:
            written["html"] = out_dir / "report.html"
            files.write_text(written["html"], render_html(context, figures))
        if "md" in formats:
            written["md"] = out_dir / "report.md"
            figure_dir = out_dir / "figures"
            figure_dir.mkdir(exist_ok=True)
            for name, (_, png) in figures.items():
                files.write_bytes(figure_dir / f"{name}.png", png)
            sheet = render_contact_sheet(context["cases"]) if context["cases"] else None
            if sheet is not None:
                files.write_bytes(figure_dir / f"{CONTACT_SHEET}.png", sheet)
            files.write_text(
                written["md"], render_markdown(context, figures, contact_sheet=sheet is not None)
            )
        if "latex" in formats:
            written["latex"] = out_dir / "table.tex"
            files.write_text(written["latex"], render_latex(context))
    except OSError as exc:
        raise CvkitError(
            f"{out_dir}: cannot write the report ({exc.strerror}); check the folder's permissions"
        ) from None
    return written


def document_context(results, report) -> dict:
    """Everything the documents show, as plain values (strings are escaped by each renderer)."""
    run, data = results.run, results.run["data"]
    intervals = metric_intervals(results)
    environments = [j["environment"] for j in results.jobs if j.get("environment")]
    torch_version = _first_json_field(environments, "torch")
    weights = results.class_weights()
    jobs = results.jobs
    models = []
    for model in results.models:
        hyperparams, searched = model["hyperparams"], ""
        nested = report.nested.get(model["name"])
        if nested:  # the stored values of searched names are the defaults no fold used
            names = {name for choice in nested["choices"] for name in choice["params"]}
            hyperparams = {k: v for k, v in hyperparams.items() if k not in names}
            searched = nested_choices_text(nested)
        models.append(
            dict(
                name=model["name"],
                role=model["role"],
                origin=model["origin"],
                digest=model["digest"][:16],
                hyperparams=hyperparams,
                searched=searched,
                metrics={m: intervals[model["name"]][m] for m in METRICS},
            )
        )
    record = report_record(report)
    comparisons = [
        dict(
            variant=c["variant"],
            verdict=c["verdict"],
            verdict_class=c["verdict_class"],
            paragraph=c["paragraph"],
            mean=c["mean_difference"],
            low=c["verdict_test"]["ci_low"],
            high=c["verdict_test"]["ci_high"],
            interval_label=c["interval_label"],
            pvalue=c["verdict_test"]["pvalue"],
            pvalue_holm=c["verdict_test"]["pvalue_holm"],
            wins=c["wins"],
            n=c["n_folds"],
            prob=c["prob_outperform"]["statistic"],
            p_better=c["bayesian"]["p_better"],
            p_equivalent=c["bayesian"]["p_equivalent"],
            p_worse=c["bayesian"]["p_worse"],
            mde=c["minimal_detectable_effect"],
            smallest_rope=c["smallest_confirmable_rope"],
            sample_tests=[
                dict(
                    repeat=s["repeat"],
                    b=s["mcnemar"]["b"],
                    c=s["mcnemar"]["c"],
                    mcnemar_p=s["mcnemar"]["pvalue"],
                    delong_diff=s["delong"]["difference"],
                    delong_p=s["delong"]["pvalue"],
                )
                for s in c["per_repeat"]
            ],
            bootstrap=None
            if c["bootstrap"] is None
            else dict(
                estimate=c["bootstrap"]["estimate"],
                low=c["bootstrap"]["ci_low"],
                high=c["bootstrap"]["ci_high"],
                method=BOOTSTRAP_METHODS[c["bootstrap"]["method"]],
                n=c["bootstrap"]["n_resamples"],
            ),
        )
        for c in record["comparisons"].values()
    ]
    aa = (
        None
        if record["aa_check"] is None
        else dict(
            verdict=record["aa_check"]["verdict"],
            verdict_class=record["aa_check"]["verdict_class"],
            paragraph=record["aa_check"]["sentence"],
        )
    )
    return dict(
        title=f"cvkit: {' vs '.join(results.variants) or results.baseline} on {data['name']}",
        metric=metric_label(report.metric),
        metric_key=report.metric,
        rope=report.rope,
        alpha=report.alpha,
        baseline=report.baseline,
        data=data,
        positive=results.positive_name,
        made_for=results.made_for,
        label_mapping=[(i, name, i == results.positive) for i, name in enumerate(results.class_names)],
        class_weights=weights,
        design=run["design"],
        config=run["config"],
        device=run["device"],
        command=run.get("command") or "(Python API)",
        cvkit_version=run.get("cvkit_version", __version__),
        torch_version=torch_version,
        total_time=results.training_seconds(),
        n_jobs=len(jobs),
        models=models,
        metric_names=[(m, metric_label(m)) for m in METRICS],
        comparisons=comparisons,
        aa=aa,
        verdict_tests=record["verdict_tests"],
        noise=record["seed_noise"],
        noise_sentence=record["seed_noise_sentence"],
        single_split=report.single_split,
        single_split_sentence=record["single_split_sentence"],
        mean_ranks_sentence=record["mean_ranks_sentence"],
        pairwise=record["pairwise"],
        estimands=record["estimands"],
        selection=report.selection,
        warnings=report.warnings,
        caveats=[*results.caveats, *report.warnings],  # the run's warnings, then the analysis's
        seeds=sorted({j["seed"] for j in jobs}),
        nested=report.nested,
        nested_sentences={model: nested_sentence(model, entry) for model, entry in report.nested.items()},
        holdout=report.holdout,
        holdout_heading=holdout_heading(report.holdout) if report.holdout else "",
        data_use=data_use(run),
        registration=record["registration"],
        reuse=reuse_text(jobs),
        clinical=None
        if getattr(report, "clinical", None) is None
        else dict(notes=clinical_notes(report.clinical), tables=clinical_tables(report.clinical)),
        cases=case_gallery_context(clinical_cases(report), results.thumbnails),
        checklist=checklist(results, report),
    )


def clinical_cases(report):
    """The report's case gallery (``ClinicalReport.cases``), or None without a clinical layer."""
    return getattr(getattr(report, "clinical", None), "cases", None)


def render_html(context: dict, figures: dict) -> str:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("cvkit.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_printable,  # before autoescape: control characters in user strings written out
    )
    environment.filters.update(num=number, signed=signed, pval=pvalue, plural=plural, glossed=glossed)
    images = {
        name: (caption, base64.b64encode(png).decode("ascii")) for name, (caption, png) in figures.items()
    }
    return environment.get_template("report.html.j2").render(
        **context,
        figures=images,
        analysis=analysis_text(context),
        glossary=GLOSSARY,
        checklist_note=CHECKLIST_NOTE,
    )


_GLOSSARY_TERMS = re.compile(
    "|".join(f"(?P<{anchor.replace('-', '_')}>{pattern})" for anchor, (_, _, pattern) in GLOSSARY.items())
)


def glossed(text):
    """``text`` escaped for HTML, each glossary term in it a link to its entry (one pass, so that a
    link's own text is never linked again)."""
    import markupsafe

    def link(match: re.Match) -> str:
        anchor = match.lastgroup.replace("_", "-")
        return f'<a class="term" href="#glossary-{anchor}">{match.group()}</a>'

    return markupsafe.Markup(_GLOSSARY_TERMS.sub(link, str(markupsafe.escape(_printable(text)))))


def render_markdown(context: dict, figures: dict, *, contact_sheet: bool = False) -> str:
    """The Markdown report; ``contact_sheet``: figures/cases.png holds the case gallery's images."""
    esc = escape.markdown
    lines = [f"# {esc(context['title'])}", ""]
    if context["registration"]:
        lines += [f"**{esc(context['registration']['sentence'])}**", ""]
    for c in context["comparisons"]:
        lines += [
            f"**{esc(c['variant'])} vs {esc(context['baseline'])}: {c['verdict'].upper()}.** "
            f"{esc(c['paragraph'])}",
            "",
        ]
    if context["aa"]:
        lines += [f"**A/A check:** {context['aa']['verdict']}. {esc(context['aa']['paragraph'])}", ""]
    lines += [esc(context["single_split_sentence"]), ""]
    if context["noise_sentence"]:
        lines += [esc(context["noise_sentence"]), ""]
    if context["mean_ranks_sentence"]:
        lines += [esc(context["mean_ranks_sentence"]), ""]
    data = context["data"]
    mapping = ", ".join(
        f"{i} = {esc(n)}" + (" (positive)" if p else "") for i, n, p in context["label_mapping"]
    )
    lines += [
        "## Set-up",
        "",
        f"- data: {esc(data['name'])}, {data['n_samples']} samples "
        f"({', '.join(f'{esc(k)} {v}' for k, v in data['class_counts'].items())})",
        f"- labels: {mapping}",
        *(f"- {label}: {esc(text)}" for label, text in context["data_use"]),
        f"- design: {plural(context['design']['folds'], 'fold')} x "
        f"{plural(context['design']['repeats'], 'repeat')} x {plural(context['design']['seeds'], 'seed')}, "
        f"master seed {context['design']['seed']}",
        f"- analysis: {esc(analysis_text(context))}",
        *(
            [
                f"- pre-registered plan: sha256 `{context['registration']['sha256']}`; decision rule: "
                f"{esc(context['registration']['plan']['analysis']['decision_rule'])}"
            ]
            if context["registration"]
            else []
        ),
        f"- command: {escape.markdown_code(context['command'])}",
        *([f"- reuse: {esc(context['reuse'])}"] if context["reuse"] else []),
        "",
    ]
    header = (
        "| metric | "
        + " | ".join(
            esc(m["name"]) + (" (baseline)" if m["role"] == "baseline" else "") for m in context["models"]
        )
        + " |"
    )
    lines += [
        f"## Metrics (positive class: {esc(context['positive'])})",
        "",
        f"Each cell: {esc(context['estimands']['cv_interval'])}.",
        "",
        header,
        "|---|" + "---:|" * len(context["models"]),
    ]
    for key, label in context["metric_names"]:
        cells = [_interval_text(m["metrics"][key]) for m in context["models"]]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if context["comparisons"]:
        lines += [
            "",
            f"## Comparisons (Δ{context['metric']} = variant - {esc(context['baseline'])})",
            "",
            f"Δ: {esc(context['estimands']['verdict'])}. CI: {esc(context['estimands']['interval'])}. "
            f"Test: {esc(context['estimands']['verdict_test'])}. "
            f"P(variant > baseline): {esc(context['estimands']['prob_outperform'])}.",
            "",
            "| variant | Δ | CI | p | p (Holm) | P(variant > baseline) "
            "| Bayes better / equiv. / worse | verdict |",
            "|---|---:|---|---:|---:|---:|---|---|",
        ]
        for c in context["comparisons"]:
            lines.append(
                f"| {esc(c['variant'])} | {signed(c['mean'])} | {c['interval_label']} "
                f"[{signed(c['low'])}, {signed(c['high'])}] | "
                f"{pvalue(c['pvalue'])} | {pvalue(c['pvalue_holm'])} | {number(c['prob'], 2)} | "
                f"{number(c['p_better'], 2)} / {number(c['p_equivalent'], 2)} / {number(c['p_worse'], 2)} | "
                f"{c['verdict']} |"
            )
    if context["holdout"]:
        lines += [
            "",
            f"## {holdout_heading(context['holdout'])}",
            "",
            esc(context["estimands"]["holdout"]) + ".",
            "",
            "| model | CV mean [95% CI] | hold-out [95% CI] | gap | gap p (Holm) |",
            "|---|---:|---:|---:|---:|",
        ]
        for h in context["holdout"]:
            lines.append(
                f"| {esc(h['model'])} | {_interval_text((h['cv_mean'], h['cv_low'], h['cv_high']))} | "
                f"{_interval_text((h['score'], h['low'], h['high']))} | {signed(h['gap'])} | "
                f"{pvalue(h['gap_pvalue_holm'])} |"
            )
    if context["clinical"]:
        lines += ["", f"## Clinical view (positive class: {esc(context['positive'])})", ""]
        lines += [f"- {esc(note)}" for note in context["clinical"]["notes"]]
        for table in context["clinical"]["tables"]:
            lines += ["", f"### {esc(table.title)}", "", esc(table.note) + ".", ""]
            lines += [
                "| | " + " | ".join(esc(c) for c in table.columns) + " |",
                "|---|" + "---:|" * len(table.columns),
            ]
            for label, cells in table.rows:
                text = [esc(f"{top} {bottom}".strip()) for top, bottom in cells]
                lines.append(f"| {esc(label)} | " + " | ".join(text) + " |")
    if context["cases"]:
        lines += _markdown_cases(context["cases"], contact_sheet)
    if figures:
        lines += ["", "## Figures", ""]
        for name, (caption, _) in figures.items():
            lines += [f"![{esc(caption)}](figures/{name}.png)", "", f"*{esc(caption)}*", ""]
    if context["caveats"]:
        lines += ["## Caveats", ""] + [f"- {esc(w)}" for w in context["caveats"]]
    lines += ["", "## Reporting checklist (TRIPOD+AI, CLAIM)", "", esc(CHECKLIST_NOTE), ""]
    lines += [f"- **{esc(topic)}**: {esc(answer)}" for topic, answer in context["checklist"]["answered"]]
    lines += ["", "For the authors (cvkit cannot know these):", ""]
    lines += [f"- [ ] **{esc(topic)}**: {esc(what)}" for topic, what in context["checklist"]["for_authors"]]
    lines += ["", "## Glossary", ""] + [
        f"- **{esc(term)}**: {esc(meaning)}" for term, meaning, _ in GLOSSARY.values()
    ]
    return "\n".join(lines) + "\n"


def _markdown_cases(cases: dict, contact_sheet: bool) -> list[str]:
    esc = escape.markdown
    lines = ["", "## Discordant and confidently wrong cases", ""]
    lines += [f"Disagreement: {esc(cases['discordant_note'])}.", ""]
    lines += [f"Confidently wrong: {esc(cases['wrong_note'])}.", ""]
    lines += [f"P: {esc(cases['probability'])}.", ""]
    lines += [esc(note) for note in cases["notes"]]
    if contact_sheet:
        caption = contact_sheet_caption(cases)
        lines += [f"![{esc(caption)}](figures/{CONTACT_SHEET}.png)", "", f"*{esc(caption)}*", ""]
    for section in cases["sections"]:
        lines += ["", f"### {esc(section.title)}", ""]
        if not section.cards:
            lines.append(esc(section.empty))
            continue
        discordant = any(card.disagreement for card in section.cards)
        header = ["sample", "true class"]
        header += [f"{cell} {model}" for model in section.models for cell in ("P", "right")]
        header += ["exactly one right"] if discordant else []
        lines += ["| " + " | ".join(esc(h) for h in header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
        for card in section.cards:
            shown = {model: (p, right) for model, p, right in card.models}
            cells = [esc(card.sample_id), esc(card.label)]
            cells += [cell for model in section.models for cell in shown.get(model, ("–", "–"))]
            cells += [card.disagreement] if discordant else []
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _registration_prefix(context: dict) -> str:
    """The caption's first words for a run with a pre-registered plan: which analysis this is."""
    registration = context["registration"]
    if not registration:
        return ""
    if registration["status"] == "exploratory":
        return "Exploratory analysis (departs from the pre-registered plan). "
    return f"Pre-registered analysis (plan sha256 {registration['sha256'][:12]}). "


def render_latex(context: dict) -> str:
    """A booktabs table for papers: model, mean [95% CI] per metric, then Δ and p per variant."""
    esc = escape.latex
    shown = [(k, label) for k, label in context["metric_names"]]
    lines = [
        "% Generated by cvkit " + str(context["cvkit_version"]) + "; needs \\usepackage{booktabs}",
        "\\begin{table}[t]",
        "\\centering",
        "\\small",
        "\\begin{tabular}{l" + "c" * len(shown) + "}",
        "\\toprule",
        "Model & " + " & ".join(esc(label) for _, label in shown) + " \\\\",
        "\\midrule",
    ]
    for m in context["models"]:
        name = esc(m["name"]) + (" (baseline)" if m["role"] == "baseline" else "")
        cells = [_interval_text(m["metrics"][k]) for k, _ in shown]
        lines.append(f"{name} & " + " & ".join(cells) + " \\\\")
    if context["comparisons"]:
        lines += [
            "\\midrule",
            f"\\multicolumn{{{len(shown) + 1}}}{{l}}{{$\\Delta$ {esc(context['metric'])} vs "
            f"{esc(context['baseline'])} ({esc(context['verdict_tests'])}; interval at the level of its Holm "
            "step, excluding 0 exactly when Holm rejects; Holm-adjusted $p$)} \\\\",
        ]
        for c in context["comparisons"]:
            lines.append(
                f"{esc(c['variant'])} & \\multicolumn{{{len(shown)}}}{{l}}{{${signed(c['mean'])}$ "
                f"{esc(c['interval_label'])} [${signed(c['low'])}$, ${signed(c['high'])}$], "
                f"$p = {pvalue(c['pvalue'])}$, "
                f"$p_\\mathrm{{Holm}} = {pvalue(c['pvalue_holm'])}$, {esc(c['verdict'])}}} \\\\"
            )
    design = context["design"]
    repeated = "" if design["repeats"] == 1 else f" repeated {design['repeats']} times"
    lines += [
        "\\bottomrule",
        "\\end{tabular}",
        f"\\caption{{{_registration_prefix(context)}{esc(context['data']['name'])}: {design['folds']}-fold "
        f"cross-validation{repeated}, "
        f"positive class {esc(context['positive'])}; mean over folds with the "
        f"corrected 95\\% confidence interval (logit scale, so it stays inside [0, 1]); "
        f"{esc(analysis_text(context))}.}}",
        "\\label{tab:cvkit}",
        "\\end{table}",
    ]
    return "\n".join(lines) + "\n"


def analysis_text(context: dict) -> str:
    """The settings a verdict depends on besides the predictions (they change on re-analysis)."""
    text = (
        f"verdict on {context['metric']}, ROPE ±{context['rope']:g}, alpha {context['alpha']:g} "
        f"(Holm across variants); positive class {context['positive']}"
    )
    if context["made_for"] != context["positive"]:
        text += (
            f" (re-analysed: the run, and the command below, name {context['made_for']} as the "
            "positive class)"
        )
    return text


def _first_json_field(environments, field):
    import json

    for env in environments:
        try:
            value = json.loads(env).get(field)
        except (TypeError, ValueError):
            continue
        if value:
            return value
    return "unknown"


def _interval_text(values) -> str:
    mean, low, high = values
    return number(mean) + ("" if not is_number(low) else f" [{number(low)}, {number(high)}]")


def _printable(value):
    """Every value a template shows (a name, a path, a dict of hyper-parameters), as text without
    control characters; Jinja's autoescape then makes it HTML. Markup (from ``glossed``) is
    already both."""
    import markupsafe

    if isinstance(value, (int, float, markupsafe.Markup)):
        return value
    return escape.printable(value, newlines=True)
