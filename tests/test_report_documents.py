import html
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

import cvkit
from cvkit.cli import main
from cvkit.data import Dataset
from cvkit.report import write_reports

HOSTILE_CLASS = "<script>alert(1)</script>"
HOSTILE_PLUGIN = "head<img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def hostile_run(tiny, tmp_path_factory):
    """A tiny real run whose class and plugin names are hostile HTML."""
    root = tmp_path_factory.mktemp("hostile")
    plugin = root / f"{HOSTILE_PLUGIN}.py"
    plugin.write_text(open("plugins/fc_attention.py").read())
    data = Dataset(
        tiny.images, tiny.labels, ("benign & co_1", HOSTILE_CLASS), 1, tiny.sample_ids, name="t<i>ny"
    )
    results = cvkit.evaluate(str(plugin), data=data, folds=3, repeats=2, seeds=2, epochs=2, out=root / "run")
    report = cvkit.compare(results)
    written = write_reports(results, report)
    return results, report, written


def test_html_is_self_contained_and_escapes_user_strings(hostile_run):
    _, report, written = hostile_run
    html = written["html"].read_text()
    assert HOSTILE_CLASS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "head&lt;img src=x onerror=alert(2)&gt;" in html
    assert "t&lt;i&gt;ny" in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # no network resource of any kind
    assert html.count('<img alt="') == 9  # every figure, embedded
    clinical = html[html.index('<section id="clinical">') :]
    clinical = clinical[: clinical.index("</section>")]
    assert "head&lt;img src=x onerror=alert(2)&gt;" in clinical and "&lt;script&gt;alert(1)" in clinical
    assert "<img" not in clinical and "<script" not in clinical
    verdict = report.comparisons[0].verdict
    assert f'data-verdict="{verdict}"' in html and "A/A check" in html


def test_markdown_has_a_row_per_metric_and_a_column_per_model(hostile_run):
    results, _, written = hostile_run
    md = written["md"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| metric |"))
    assert header.count("|") == len(results.model_names) + 2
    for label in ("AUC", "accuracy", "F1", "Brier"):
        assert re.search(rf"^\| {label} \| [0-9.]+ \[", md, re.MULTILINE)
    for link in re.findall(r"\]\((figures/[a-z_]+\.png)\)", md):
        assert (written["md"].parent / link).stat().st_size > 1000
    assert "<script>" not in md
    clinical = md[md.index("## Clinical view") : md.index("## Figures")]
    assert "<img" not in clinical and "<script>" not in clinical and "### Operating point" in clinical


def test_latex_table_structure_and_escaping(hostile_run, tmp_path):
    results, _, written = hostile_run
    tex = written["latex"].read_text()
    assert tex.count("\\begin{tabular}") == 1 and "\\toprule" in tex and "\\bottomrule" in tex
    rows = [line for line in tex.splitlines() if line.endswith("\\\\") and "[" in line and "&" in line]
    assert len(rows) >= len(results.model_names)
    assert "positive class \\textless{}script\\textgreater{}alert(1)\\textless{}/script\\textgreater{}" in tex
    assert "head\\textless{}img src=x onerror=alert(2)\\textgreater{}" in tex
    assert tex.count("{") == tex.count("}")
    engine = shutil.which("pdflatex")
    if engine:
        doc = tmp_path / "doc.tex"
        doc.write_text(
            "\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n" + tex + "\\end{document}\n"
        )
        subprocess.run(
            [engine, "-interaction=nonstopmode", "-halt-on-error", doc.name],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            timeout=120,
        )


def test_report_command_regenerates_the_same_summary(tiny_npz, tmp_path, capsys):
    args = [
        "evaluate",
        "plugins/fc_attention.py",
        "--data",
        str(tiny_npz),
        "--folds",
        "3",
        "--repeats",
        "1",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
        "--json",
        str(tmp_path / "a.json"),
        "--report",
        "md",
    ]
    assert main(args) == 0
    assert (tmp_path / "run" / "report.md").exists() and not (tmp_path / "run" / "report.html").exists()
    first = capsys.readouterr().out
    assert main(["report", str(tmp_path / "run"), "--json", str(tmp_path / "b.json")]) == 0
    again = capsys.readouterr().out
    assert json.loads((tmp_path / "a.json").read_text()) == json.loads((tmp_path / "b.json").read_text())
    assert all((tmp_path / "run" / name).exists() for name in ("report.html", "report.md", "table.tex"))

    def section(text):
        return text[text.index("Test-fold metrics") : text.index("Calibration and caveats")]

    assert section(first) == section(again)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian package 'chromium')")
def test_html_report_renders_in_headless_chromium(hostile_run, tmp_path):
    from PIL import Image

    _, report, written = hostile_run
    url = written["html"].resolve().as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            *profile,
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=3000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert html.escape(report.comparisons[0].paragraph, quote=False)[:80] in dom.stdout  # the verdict text
    assert dom.stdout.count('<img alt="') == 9 and "<script" not in dom.stdout  # figures; no injected element
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Refused to" in line]
    assert console == []  # no script errors, no blocked (network) loads
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            *profile,
            f"--screenshot={shot}",
            "--window-size=1100,1400",
            "--hide-scrollbars",
            url,
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 5 and (pixels < 128).mean() > 0.01  # text and figures, not a blank page


def test_every_output_reads_one_serialisation_and_states_estimands(hostile_run, tmp_path):
    """Issue 16 (what to build 5, item 10): statistics computed once into frozen objects; HTML,
    Markdown, LaTeX and JSON read the same record, and each number says what it estimates."""
    import dataclasses

    from markupsafe import escape

    from cvkit.report import report_record, write_json
    from cvkit.report._narrative import ESTIMANDS

    results, report, written = hostile_run
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.comparisons[0].verdict = "better"
    record = report_record(report)
    (entry,) = record["comparisons"].values()
    page, md, tex = (written[k].read_text() for k in ("html", "md", "latex"))
    page = re.sub(r'<a class="term" href="#glossary-[a-z-]+">(.*?)</a>', r"\1", page)  # glossary links
    label = entry["interval_label"]
    assert str(escape(label)) in page and label in md and label.replace("%", "\\%") in tex
    for key in ("verdict", "interval", "bootstrap", "prob_outperform", "cv_interval"):
        assert str(escape(ESTIMANDS[key])) in page, key
    assert ESTIMANDS["verdict"] in md
    assert str(escape(record["seed_noise_sentence"])) in page
    write_json(results, tmp_path / "s.json", report)
    stored = json.loads((tmp_path / "s.json").read_text())["comparison"]
    (stored_entry,) = stored["comparisons"].values()
    assert stored_entry["verdict_test"] == pytest.approx(entry["verdict_test"])
    assert stored_entry["paragraph"] == entry["paragraph"] and stored["estimands"] == ESTIMANDS
    assert "ci_low" not in stored_entry["prob_outperform"]  # item 2: no interval over correlated pairs
