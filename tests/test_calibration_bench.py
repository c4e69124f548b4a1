"""The reduced calibration bench (benchmarks/calibration.py --reduced): real learners, real seed
noise, data sets drawn from a population. The deciding test must hold its level in every regime,
the corrected t's rates must be reported beside it, the A/A check must catch a seed offset at the
power it states, and the design model's projections must match the power reached."""

import importlib.util
import sys
from pathlib import Path

import pytest

from cvkit.stats import DEFAULT_VERDICT_METHOD, VERDICT_METHODS

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("calibration_bench", ROOT / "benchmarks" / "calibration.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up there
_spec.loader.exec_module(bench)


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "table.md"
    summary = bench.main(["--reduced", "--out", str(out)])
    return summary, out.read_text(encoding="utf-8"), bench.REDUCED.n_datasets


def test_the_deciding_test_holds_its_level_in_every_regime(reduced):
    summary, _, n = reduced
    assert set(summary) == {"converged", "unstable_sgd"}
    for regime, tally in summary.items():
        fpr = tally[DEFAULT_VERDICT_METHOD, "null"]["reject"]
        assert fpr <= 0.05 + bench.margin(0.05, n), (regime, fpr)
        assert tally[DEFAULT_VERDICT_METHOD, "null"]["used"] == [DEFAULT_VERDICT_METHOD]


def test_every_candidate_and_the_corrected_t_are_reported(reduced):
    summary, text, _ = reduced
    for method in VERDICT_METHODS:
        assert f"| `{method}` |" in text and f"| verdict `{method}`" in text
    assert f"verdict `{DEFAULT_VERDICT_METHOD}` (decides)" in text
    row = next(line for line in text.splitlines() if line.startswith("| `corrected_t` |"))
    assert row.count("%") == 3 * len(summary)  # FPR / power / coverage in every regime


def test_the_seed_noise_check_is_calibrated_and_catches_one_seed_sd(reduced):
    summary, _, n = reduced
    for regime, tally in summary.items():
        aa = tally["aa"]
        assert aa["fpr"] <= 0.05 + bench.margin(0.05, n), regime
        assert abs(aa["power"] - aa["stated"]) <= bench.margin(aa["stated"], n) + 0.05, regime
        assert aa["corrected_fpr"] <= aa["fpr"]  # the old check: more conservative, never less


@pytest.mark.xfail(
    reason="open (issue 16 item 3): the design model overstates power where the test's se exceeds the "
    "true sd "
    "under the alternative; full run: MLP regimes 11-19 points high, converged 5-8; the "
    "reduced converged set reaches 40% where 64% is projected",
    strict=False,
)
def test_the_design_model_projects_the_power_the_designs_reach(reduced):
    summary, _, n = reduced
    for regime, tally in summary.items():
        # Designs the advice can recommend from the 2-seed pilot: never fewer seeds than were run.
        for repeats, seeds in [d for d in bench.SUB_DESIGNS if d[1] >= bench.PILOT[1]]:
            design = tally["design"][DEFAULT_VERDICT_METHOD, repeats, seeds]
            reached = design["reached"]
            assert abs(design["projected"] - reached) <= 0.05 + bench.margin(max(reached, 0.05), n), (
                regime,
                repeats,
                seeds,
                design,
            )
