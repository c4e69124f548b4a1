"""Issue 21, item 6: the terminal output read as a newcomer reads it (short usage errors, the live
display's labels and ETA, wrapped lines, singular/plural, named missing paths, id-like columns)."""

from __future__ import annotations

import pytest

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
