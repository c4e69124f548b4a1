"""`cvkit plan` (cvkit.planning): designs, power for a smallest effect, cost, and the one
recommendation, from an earlier run or from stated priors."""

import io
import json

import pytest
from rich.console import Console

import cvkit
from cvkit import stats
from cvkit.cli import main
from cvkit.errors import ConfigError
from cvkit.planning import PLAN_FOLDS, PLAN_REPEATS, plan_from_priors, plan_from_run
from cvkit.report import render_plan

PRIORS = dict(n_samples=428, fold_sd=0.06, seed_sd=0.02, min_effect=0.03)


@pytest.fixture(scope="module")
def pilot(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("plan") / "run"
    return cvkit.evaluate(
        ["plugins/fc_attention.py", "logreg"], data=tiny, out=out, folds=3, repeats=2, seeds=2, epochs=2
    )


def _brute_force_cheapest(plan, data_factor=1.0):
    """The cheapest design reaching the target power, by design_power over the whole grid."""
    seeds = sorted({d.n_seeds for d in plan.designs})
    best = None
    for k in sorted({plan.variance.n_folds, *PLAN_FOLDS}):
        for r in PLAN_REPEATS:
            for s in range(seeds[0], 11):
                p = stats.design_power(
                    plan.variance, plan.min_effect, n_folds=k, n_repeats=r, n_seeds=s,
                    data_factor=data_factor, alpha=plan.alpha_per_test, method=plan.method,
                )  # fmt: skip
                trainings = (1 + len(plan.variants)) * k * r * s
                if p >= plan.target_power and (best is None or trainings < best[0]):
                    best = (trainings, p)
    return best


def test_the_recommendation_is_the_cheapest_design_that_reaches_the_power():
    plan = plan_from_priors(**{**PRIORS, "min_effect": 0.09})
    assert plan.recommended is not None and plan.data_needed is None
    trainings, power = _brute_force_cheapest(plan)
    assert plan.recommended.trainings == trainings
    assert plan.recommended.power >= plan.target_power
    assert f"{plan.recommended.trainings}" in plan.sentence and plan.recommended.describe() in plan.sentence
    # every design shown states its power and the effect it detects with the target power
    for d in plan.designs:
        assert d.reaches == (d.power >= 0.8)
        if d.n_repeats >= 2:
            power_at_detectable = stats.design_power(
                plan.variance, d.detectable, n_folds=d.n_folds, n_repeats=d.n_repeats, n_seeds=d.n_seeds,
                data_factor=d.data_factor, alpha=plan.alpha_per_test, method=plan.method,
            )  # fmt: skip
            assert power_at_detectable == pytest.approx(0.8, abs=1e-3)


def test_when_no_design_on_the_data_reaches_the_plan_says_how_much_data_would():
    plan = plan_from_priors(**PRIORS)  # 0.03 AUC with a per-fold sd of 0.06 on 428 samples
    assert max(d.power for d in plan.designs if d.data_factor == 1) < 0.8
    assert plan.data_needed is not None and plan.data_needed > 1
    assert plan.recommended.data_factor == plan.data_needed and plan.recommended.reaches
    assert _brute_force_cheapest(plan) is None  # truly nothing on this data
    assert "No design on these 428 samples reaches 80% power" in plan.sentence
    assert f"about {plan.data_needed:g}x the data" in plan.sentence
    # the data rows show the recommended design on the way there, with power rising with the data
    on_the_way = [d for d in plan.designs if d.data_factor > 1]
    assert [d.power for d in on_the_way] == sorted(d.power for d in on_the_way)


def test_alpha_is_split_over_the_variants_and_costs_power():
    one = plan_from_priors(**{**PRIORS, "min_effect": 0.09})
    three = plan_from_priors(**{**PRIORS, "min_effect": 0.09}, n_variants=3)
    assert three.alpha_per_test == pytest.approx(0.05 / 3)
    same = {(d.n_folds, d.n_repeats, d.n_seeds): d for d in one.designs if d.data_factor == 1}
    for d in three.designs:
        key = (d.n_folds, d.n_repeats, d.n_seeds)
        if d.data_factor == 1 and key in same:
            assert d.power < same[key].power
            assert d.trainings == same[key].trainings * 4 // 2


def test_times_scale_the_job_time_with_the_trainings_and_the_training_set():
    plan = plan_from_priors(**PRIORS, seconds_per_job=10.0, folds=5)
    for d in plan.designs:
        size = d.data_factor * ((d.n_folds - 1) / d.n_folds) / (4 / 5)
        assert d.seconds == pytest.approx(10.0 * 2 * d.n_folds * d.n_repeats * d.n_seeds * size)
    assert all(d.seconds is None for d in plan_from_priors(**PRIORS).designs)


def test_without_a_seed_sd_there_is_no_seeds_lever():
    plan = plan_from_priors(**{**PRIORS, "seed_sd": 0.0})
    assert {d.n_seeds for d in plan.designs} == {1}
    assert {d.n_seeds for d in plan_from_priors(**PRIORS).designs} > {1}


@pytest.mark.parametrize(
    "bad, words",
    [
        (dict(fold_sd=0.0), "fold_sd must be a positive number"),
        (dict(seed_sd=0.07), "seed_sd must lie in [0, fold_sd)"),
        (dict(min_effect=float("nan")), "min_effect must be a positive number"),
        (dict(power=1.0), "power must lie in (0, 1)"),
        (dict(n_samples=6), "at least 2 samples per fold"),
    ],
)
def test_bad_priors_are_refused_with_one_line(bad, words):
    with pytest.raises(ConfigError) as error:
        plan_from_priors(**{**PRIORS, **bad})
    assert words in str(error.value)


def test_plan_from_a_run_uses_its_variance_components_and_job_times(pilot):
    plan = plan_from_run(pilot, min_effect=0.05)
    report = cvkit.compare(pilot, min_effect=0.05)
    noisiest = max(
        report.comparisons,
        key=lambda c: stats.detectable_effect(c.variance_model, alpha=0.05 / 2, method=c.ttest.method),
    )
    assert plan.planned_for == noisiest.variant and plan.variance == noisiest.variance_model
    assert plan.alpha_per_test == pytest.approx(0.025) and plan.variants == ("fc_attention", "logreg")
    assert plan.class_counts == pilot.run["data"]["class_counts"]
    # the run's own design is a row, with the run's own number of trainings
    own = [d for d in plan.designs if (d.n_folds, d.n_repeats, d.n_seeds, d.data_factor) == (3, 2, 2, 1.0)]
    assert own and own[0].trainings == 3 * 3 * 2 * 2
    # one job of each model, measured: the sum of the models' mean job times
    by_model = {}
    for job in pilot.jobs:
        by_model.setdefault(job["model"], []).append(job["duration_s"])
    assert plan.seconds_per_split == pytest.approx(sum(sum(v) / len(v) for v in by_model.values()))
    # the ROPE is the default smallest effect
    assert plan_from_run(pilot).min_effect == report.comparisons[0].rope


def test_cvkit_plan_prints_a_table_in_80_columns_and_writes_json(pilot, tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["plan", "--from", str(pilot.run_dir), "--min-effect", "0.05", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "folds x repeats x seeds" in printed and "trainings" in printed
    record = json.loads(out.read_text())["plan"]
    assert (
        record["min_effect"] == 0.05 and record["designs"] and record["sentence"] in " ".join(printed.split())
    )
    buffer = io.StringIO()
    render_plan(plan_from_priors(**PRIORS, seconds_per_job=5.0), Console(file=buffer, width=80), jobs=2)
    assert max(len(line) for line in buffer.getvalue().splitlines()) <= 80
    assert "…" not in buffer.getvalue()  # no column cut short


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--samples", "428", "--min-effect", "0.03"], "needs --fold-sd"),
        (["--samples", "428", "--fold-sd", "0.06"], "needs --min-effect"),
        (["--samples", "428", "--fold-sd", "0.06", "--min-effect", "0.03", "--jobs", "0"], "--jobs"),
    ],
)
def test_cvkit_plan_refuses_incomplete_priors_with_one_line_and_exit_2(argv, words, capsys):
    assert main(["plan", *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


def test_cvkit_plan_from_a_run_refuses_priors(pilot, capsys):
    assert main(["plan", "--from", str(pilot.run_dir), "--fold-sd", "0.06"]) == 2
    assert "state priors" in capsys.readouterr().err


def test_the_plan_projects_the_sequential_rule_for_each_maximum():
    plan = plan_from_priors(**{**PRIORS, "min_effect": 0.09})
    assert [d.max_repeats for d in plan.sequential] == [5, 10, 20]
    model = plan.variance
    for d in plan.sequential:
        variances, dfs = zip(
            *(
                stats.design_variance(
                    model, n_folds=d.n_folds, n_repeats=r, n_seeds=d.n_seeds, method=plan.method
                )
                for r in range(2, d.max_repeats + 1)
            )
        )
        power, look = stats.sequential_design_power(variances, plan.min_effect, plan.alpha_per_test, dfs=dfs)
        # the looks' t statistics cost power against normal ones
        assert power < stats.sequential_design_power(variances, plan.min_effect, plan.alpha_per_test)[0]
        assert d.power == pytest.approx(power) and d.expected_repeats == pytest.approx(look + 1)
        assert 2 <= d.expected_repeats <= d.max_repeats
        assert d.expected_trainings == pytest.approx(2 * d.n_folds * d.n_seeds * d.expected_repeats)
    powers = [d.power for d in plan.sequential]
    assert powers == sorted(powers)  # a higher maximum never costs power
