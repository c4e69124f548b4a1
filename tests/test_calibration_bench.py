"""The reduced calibration bench (benchmarks/calibration.py --reduced): real learners, real seed
noise, data sets drawn from a population. The deciding test must hold its level in every regime,
the corrected t's rates must be reported beside it, the A/A check must catch a seed offset at the
power it states, and a design the advice states detects an effect with 80% power must do so."""

import importlib.util
import sys
from pathlib import Path

import cloudpickle
import pytest

from cvkit.stats import DEFAULT_VERDICT_METHOD, VERDICT_METHODS

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("calibration_bench", ROOT / "benchmarks" / "calibration.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up there
_spec.loader.exec_module(bench)
# The bench's worker processes cannot import a module loaded from a file path: send its code along.
cloudpickle.register_pickle_by_value(bench)


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


def test_the_designs_the_advice_states_reach_their_stated_power(reduced):
    # From each data set's small pilot, the effect each design detects with 80% power; run at that
    # true effect (a location shift of the variant), about 80% of those runs must detect it.
    summary, text, n = reduced
    assert "## Design advice: stated 80.0% power" in text
    for regime, tally in summary.items():
        for repeats, seeds in bench.ADVISED_DESIGNS:
            design = tally["design"][DEFAULT_VERDICT_METHOD, repeats, seeds]
            assert design["effect"] > 0
            assert abs(design["reached"] - bench.TARGET_POWER) <= 0.05 + bench.margin(
                bench.TARGET_POWER, n
            ), (
                regime,
                repeats,
                seeds,
                design,
            )


def test_the_sequential_rule_holds_its_level_and_saves_jobs(reduced):
    # A = B: "better" or "worse" at any look in no more than alpha of runs (binomial margin); the
    # jobs it takes against the fixed design projected to have the same power.
    summary, text, _ = reduced
    assert "## Sequential rule (--until-decided)" in text
    staged = {regime: tally["sequential"] for regime, tally in summary.items() if "sequential" in tally}
    assert set(staged) == set(bench.REDUCED.sequential_regimes)
    for regime, seq in staged.items():
        n = seq["n"]
        claims = sum(decision in ("better", "worse") for decision, _, _ in seq["null"])
        assert claims / n <= 0.05 + bench.margin(0.05, n), (regime, claims, n)
        used = sorted(2 * bench.Config.n_folds * repeats for _, repeats, _ in seq["better"])
        fixed = sorted(2 * bench.Config.n_folds * f for _, _, f in seq["better"])
        assert used[n // 2] <= 0.6 * fixed[n // 2], (regime, used, fixed)  # the goal: 40% fewer jobs
        assert all(2 <= repeats <= bench.SEQUENTIAL_REPEATS for _, repeats, _ in seq["null"] + seq["better"])


def test_the_power_a_pilot_states_for_a_stated_effect_is_not_far_off(reduced):
    # As `cvkit plan --from <pilot> --min-effect 0.03` states it: each data set's 2-repeat pilot
    # projects the power of two fixed designs and of the sequential rule for a true difference of
    # 0.03; the runs shifted to exactly that difference must say "better" about as often. The full
    # bench (docs/statistics.md) lands within 5 points on BreastMNIST and in the converged regime,
    # and up to 16 under in the unstable one (a variant that extends the baseline: its difference's
    # se grows with the difference); at 40 data sets per regime this catches a broken projection.
    summary, text, _ = reduced
    assert f"### Stated power for a difference of {bench.CHECK_EFFECT}" in text
    for regime, tally in summary.items():
        checks = tally["sequential"]["checks"]
        assert set(checks) == set(bench.CHECK_DESIGNS)
        for design, (projected, oracle, reached) in checks.items():
            n = len(reached)
            stated, rate = sum(projected) / n, sum(reached) / n
            assert 0 < stated < 1 and len(oracle) == n
            assert abs(rate - stated) <= 0.15 + bench.margin(stated, n), (regime, design, stated, rate)
