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
