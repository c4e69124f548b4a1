"""The README's figures are what the command prints: a fresh run of its main command (once per
test session, on the demo data, nothing reused) gives exactly the verdict section the README shows,
verdict line, ΔAUC and interval included. CPU runs are deterministic on one machine (PyTorch picks
CPU kernels by instruction set, so another machine gives other last bits and other numbers): the
README names the machine its excerpt came from, and the check runs where the machine is the same.
The README is rewritten by ``python benchmarks/readme.py`` after any change that moves a number or
a word."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "benchmarks" / "readme.py")
readme = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme)


@pytest.fixture(scope="session")
def main_run(tmp_path_factory):
    """The README's main command, fresh, in an empty reports folder: (run folder, wall seconds)."""
    return readme.fresh_run(tmp_path_factory.mktemp("readme_reports"))


def test_the_readme_excerpt_is_a_fresh_run_of_the_main_command(request, record_property):
    generated_on = readme.readme_machine(readme.README.read_text(encoding="utf-8"))
    assert generated_on, "the README does not say which machine its excerpt came from"
    if generated_on != readme.machine():
        pytest.skip(
            f"the README's numbers come from {generated_on}; this machine is {readme.machine()}, whose "
            "CPU kernels give other numbers: `python benchmarks/readme.py` here to check the words"
        )
    run_dir, seconds = request.getfixturevalue("main_run")
    record_property("main_command_seconds", round(seconds, 1))
    print(f"main command: {seconds:.1f} s")
    fresh = readme.excerpt(run_dir)
    shown = readme.readme_excerpt(readme.README.read_text(encoding="utf-8"))
    assert shown == fresh, (
        "the README's terminal excerpt is not what the main command prints now; rerun "
        "`python benchmarks/readme.py`:\n" + readme.difference(shown, fresh)
    )


def test_the_excerpt_check_can_fail():
    text = readme.README.read_text(encoding="utf-8")
    shown = readme.readme_excerpt(text)
    changed = readme.with_excerpt(text, shown.replace("0.", "9.", 1))
    assert readme.readme_excerpt(changed) != shown and readme.difference(
        shown, readme.readme_excerpt(changed)
    )
    rewritten = readme.with_excerpt(text, shown)
    assert readme.readme_excerpt(rewritten) == shown  # a rewrite round-trips
    assert readme.readme_machine(rewritten) == readme.machine()  # and records this machine, once
    assert readme.with_excerpt(rewritten, shown) == rewritten
    with pytest.raises(ValueError, match="markers"):
        readme.readme_excerpt(text.replace(readme.START, ""))
