"""Issue 21, item 6: the terminal output read as a newcomer reads it (short usage errors, the live
display's labels and ETA, wrapped lines, singular/plural, named missing paths, id-like columns)."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest
from rich.console import Console

from cvkit.cli import main


def test_mistyped_option_value_prints_the_error_first_and_one_hint(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", "--folds", "x"])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    # Before: 22 lines of usage, then the one useful line last.
    assert lines == [
        "cvkit: error: argument --folds: invalid int value: 'x'",
        "run cvkit evaluate --help for usage",
    ]


def _shown(console) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", console.file.getvalue())


def test_live_display_keeps_its_labels_and_shows_the_time_left():
    from cvkit.runner import JobProgress

    console = Console(file=io.StringIO(), force_terminal=True, width=150)
    display = JobProgress(console, epochs=2)
    now = [0.0]
    display.progress.get_time = lambda: now[0]  # the tasks take their clock from here
    job = SimpleNamespace(key="k", model="resnet18", repeat=0, fold=1, seed_index=0)
    with display:
        display.start(total=4, done=0)
        display.job_started(job)
        for now[0] in (10.0, 20.0):
            display.epoch_done(job, {})
        display.progress.refresh()
    frame = _shown(console).splitlines()[::-1]  # the last frame first
    epochs_line = next(line for line in frame if "resnet18 r0 f1" in line)
    jobs_line = next(line for line in frame if "0/4" in line)
    # Before: the epochs label gave way to the running job's name, and there was no ETA at all.
    assert epochs_line.lstrip().startswith("epochs") and jobs_line.lstrip().startswith("jobs")
    # 2 epochs in the last 10 s of samples (one per 10 s), 6 to go: a minute left.
    assert "ETA 0:01:00" in jobs_line


@pytest.fixture
def one_of_each(tiny_npz, tmp_path, capsys, monkeypatch):
    """A run with one repeat, one epoch, one seed and one extra feature, printed 80 columns wide:
    (terminal output, run folder)."""
    from cvkit.data import load_data

    monkeypatch.setenv("COLUMNS", "80")

    ids = load_data(str(tiny_npz)).sample_ids.tolist()
    extra = tmp_path / "extra.csv"
    extra.write_text("sample_id,score\n" + "".join(f"{s},{i % 7}\n" for i, s in enumerate(ids)))
    out = tmp_path / "run"
    args = [
        "evaluate",
        "fc_attention",
        "--data",
        str(tiny_npz),
        "--folds",
        "2",
        "--repeats",
        "1",
        "--epochs",
        "1",
    ]
    assert main([*args, "--extra", str(extra), "--out", str(out), "--report", "html,md"]) == 0
    return capsys.readouterr().out, out


def test_counts_of_one_are_singular(one_of_each):
    shown, run_dir = one_of_each
    text = " ".join(shown.split())  # as read, whatever the terminal's width
    # Before: "2 folds x 1 repeats x 1 seed(s)", "1 epochs", "1 extra features".
    assert "2 folds x 1 repeat x 1 seed," in text
    assert "1 epoch, batch" in text and "1 extra feature (score)" in text
    assert "1 repeats" not in text and "1 epochs" not in text and "seed(s)" not in text
    markdown = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "2 folds x 1 repeat x 1 seed," in markdown
    page = " ".join((run_dir / "report.html").read_text(encoding="utf-8").split())
    assert "2 folds &times; 1 repeat &times; 1 seed" in page and "1 epoch, batch" in page


def test_table_titles_break_between_phrases_not_inside_them(one_of_each):
    shown, _ = one_of_each
    lines = [line.rstrip() for line in shown.splitlines()]
    # Before: titles wrapped at their table's width ("... predictions (first" / "seed)") and the
    # verdict table's at the console's ("over 5 folds x 3" / "repeats by ...").
    for title in (
        "Sample-level tests on each repeat's out-of-fold predictions (first seed)",
        "Checkpoint selection rule: mean AUC on the outer test folds, and Δ with p",
        "Does the variant beat resnet18? ΔAUC = variant - baseline",
        "over 2 folds x 1 repeat by the corrected resampled t,",
    ):
        assert title in lines


def test_a_tied_nested_search_is_called_a_tie_and_the_set_up_lists_the_chosen_values(tiny, tmp_path):
    import cvkit
    from cvkit.report import render_comparison, write_reports

    results = cvkit.evaluate(
        "plugins/mlp_head.py",
        data=tiny,
        baseline="logreg",
        folds=2,
        repeats=1,
        epochs=1,
        nested=True,
        inner_folds=2,
        out=tmp_path / "nested",
    )
    report = cvkit.compare(results)
    entry = report.nested["mlp_head"]
    # Whatever this tiny run chose, the two outer folds now disagree: a 1-1 tie (the report layer
    # reads only these choices).
    for choice, hidden in zip(entry["choices"], (100, 1000)):
        choice["params"] = {"hidden": hidden}

    console = Console(file=io.StringIO(), width=200)
    render_comparison(report, console)
    shown = " ".join(console.file.getvalue().split())
    assert "chosen in 50%" not in shown  # before: "hidden=100 was chosen in 50% of 2 outer folds."
    assert "no choice stands out: hidden=100 and hidden=1000 were each chosen in 1 of 2 outer folds" in shown

    page = write_reports(results, report, ["html"])["html"].read_text(encoding="utf-8")
    set_up = " ".join(page[page.index('id="setup"') :].split("</section>")[0].split())
    model = next(line for line in set_up.split("<dt>") if line.startswith("variant"))
    # Before: the set-up listed the plugin's default {'hidden': 500, ...}, which no fold used.
    assert "dropout&#39;: 0.5" in model and "hidden&#39;: 500" not in model
    assert "chosen per outer fold by nested search: hidden=100 in 1 of 2" in model
    assert "no choice stands out" in page


def _write_manifest(folder, header, cells):
    """A manifest of 8 grey 8x8 PNG images under ``img/``: ``cells(i)`` gives row i after the image
    path and label."""
    import numpy as np
    from PIL import Image

    (folder / "img").mkdir(parents=True)
    rows = []
    for i in range(8):
        Image.fromarray(np.full((8, 8), 30 * i, np.uint8), "L").save(folder / "img" / f"{i}.png")
        rows.append(f"img/{i}.png,{'a' if i % 2 else 'b'}{cells(i)}")
    path = folder / "manifest.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_a_missing_manifest_image_names_the_path_looked_for(tmp_path, capsys):
    manifest = _write_manifest(tmp_path / "data", "image,label", lambda i: "")
    manifest.write_text(manifest.read_text().replace("img/3.png", "images/3.png"))
    assert main(["evaluate", "--data", str(manifest)]) == 2
    error = capsys.readouterr().err.strip()
    # Before: "manifest.csv, row 5 (images/3.png): image file not found", and nothing on where.
    looked = (tmp_path / "data" / "images" / "3.png").absolute()
    assert error.startswith("cvkit: error: ") and "image file not found" in error
    assert error.endswith(f"looked for {looked}")


def test_a_manifest_column_named_like_a_patient_id_gets_a_hint(tmp_path):
    from cvkit.data import load_data

    manifest = _write_manifest(tmp_path, "image,label,Patient ID,age", lambda i: f",{1000 + i // 2},{40 + i}")
    with pytest.warns(UserWarning) as caught:
        dataset = load_data(str(manifest))
    assert dataset.extra_names == ("Patient ID", "age")  # still a feature: the hint says what to do
    lines = [str(w.message) for w in caught]
    # Before: no warning at all.
    assert lines == [
        f"{manifest}: column 'Patient ID' looks like a patient/record id, yet it becomes a numeric "
        "feature; name it patient_id (the column that keeps a patient's images in one fold) or group, "
        "or drop it"
    ]


def test_an_extra_csv_column_named_like_a_patient_id_gets_a_hint(tiny, tmp_path):
    from cvkit.data import join_extra_csv

    ids = tiny.sample_ids.tolist()
    extra = tmp_path / "extra.csv"
    extra.write_text(
        "sample_id,PatientID,thyroid_size\n" + "".join(f"{s},{i // 2},{i}\n" for i, s in enumerate(ids))
    )
    with pytest.warns(UserWarning, match=r"column 'PatientID' looks like a patient/record id") as caught:
        join_extra_csv(tiny, extra)
    assert len(caught) == 1  # thyroid_size ends in "id" letters but is no id
    assert "drop it from the CSV" in str(caught[0].message)


def test_lines_before_the_live_display_wrap_between_words_on_a_terminal():
    from cvkit.cli import say

    line = "cvkit: warning: " + " ".join(f"word{i:02d}" for i in range(30))
    terminal = Console(file=io.StringIO(), force_terminal=True, width=40, emoji=False)
    say(terminal, line)
    rows = _shown(terminal).splitlines()
    # Before: one 250-character line, which the terminal cut at column 40 inside a word.
    assert len(rows) > 1 and all(len(row) <= 40 for row in rows)
    assert " ".join(" ".join(rows).split()) == line
    piped = Console(file=io.StringIO(), width=40, emoji=False)
    say(piped, line)
    assert piped.file.getvalue() == line + "\n"  # a log keeps it whole
