"""Pre-registration: `cvkit plan --write` fixes the analysis, `cvkit evaluate --plan` runs it, the
plan's hash is stored with the run, every report says "pre-registered", and a later analysis with
another metric, ROPE or alpha is labelled exploratory in every output format."""

import json

import numpy as np
import pytest

import cvkit
from cvkit.cli import main
from cvkit.errors import ConfigError
from cvkit.planning import (
    AnalysisPlan,
    analysis_plan,
    plan_from_priors,
    read_analysis_plan,
    write_analysis_plan,
)

DESIGN = dict(folds=2, repeats=2, seeds=1, seed=0)


def _plan(**analysis) -> AnalysisPlan:
    priors = plan_from_priors(n_samples=60, fold_sd=0.1, min_effect=0.1, folds=2)
    design = next(d for d in priors.designs if (d.n_folds, d.n_repeats, d.n_seeds) == (2, 2, 1))
    plan = analysis_plan(priors, design, baseline="resnet18", variants=["logreg"], **analysis)
    return plan


@pytest.fixture(scope="module")
def planned_run(tiny, tmp_path_factory):
    """A run of a plan file through the command line, on the tiny set as an archive."""
    folder = tmp_path_factory.mktemp("registered")
    archive = folder / "data.npz"
    images, labels = tiny.images[:, 0], 1 - tiny.labels[:, None]
    np.savez(
        archive, train_images=images[:40], train_labels=labels[:40], val_images=images[40:50],
        val_labels=labels[40:50], test_images=images[50:], test_labels=labels[50:],
    )  # fmt: skip
    plan_file = folder / "plan.toml"
    write_analysis_plan(_plan(), plan_file)
    run_dir = folder / "run"
    argv = [
        "evaluate",
        "--plan",
        str(plan_file),
        "--data",
        str(archive),
        "--epochs",
        "1",
        "--out",
        str(run_dir),
    ]
    assert main(argv) == 0
    return folder, plan_file, run_dir, archive


def test_a_plan_file_round_trips_and_its_hash_is_its_content(tmp_path):
    plan = _plan(rope=0.02)
    for name in ("plan.toml", "plan.json"):
        write_analysis_plan(plan, tmp_path / name)
        again = read_analysis_plan(tmp_path / name)
        assert again.content == plan.content and again.sha256 == plan.sha256
    text = (tmp_path / "plan.toml").read_text()
    (tmp_path / "edited.toml").write_text(
        "# my own comment\n" + text.replace("alpha = 0.05", "alpha = 0.05  # as agreed")
    )
    assert read_analysis_plan(tmp_path / "edited.toml").sha256 == plan.sha256  # comments are not content
    (tmp_path / "other.toml").write_text(text.replace("alpha = 0.05", "alpha = 0.1"))
    assert read_analysis_plan(tmp_path / "other.toml").sha256 != plan.sha256


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda t: t.replace("folds = 2\n", ""), "[design] lacks folds"),
        (lambda t: t.replace("alpha = 0.05", 'alpha = "0.05"'), "[analysis] alpha must be a float"),
        (
            lambda t: t.replace("alpha = 0.05", "alpha = 1.5"),
            "[analysis] alpha must lie strictly between 0 and 1",
        ),
        (lambda t: t.replace("[power]", "[power]\nluck = 1.0"), "[power] has unknown key(s) luck"),
        (lambda t: t.replace('metric = "auc"', 'metric = "f2"'), "[analysis] metric 'f2'"),
        (lambda t: t.replace('variants = ["logreg"]', "variants = []"), "[models] variants must be"),
        (lambda t: t.replace("[design]", "[design"), "not a valid plan file"),
    ],
)
def test_a_broken_plan_file_gets_one_line_naming_the_file_and_the_key(tmp_path, edit, words):
    path = tmp_path / "plan.toml"
    write_analysis_plan(_plan(), path)
    path.write_text(edit(path.read_text()))
    with pytest.raises(ConfigError) as error:
        read_analysis_plan(path)
    message = str(error.value)
    assert message.startswith(str(path)) and words in message and "\n" not in message


def test_evaluate_runs_the_plan_and_every_report_says_pre_registered(planned_run, capsys):
    folder, plan_file, run_dir, _ = planned_run
    plan = read_analysis_plan(plan_file)
    results = cvkit.Results(run_dir)
    assert results.registration == plan.record()
    assert {k: results.run["design"][k] for k in DESIGN} == DESIGN
    assert results.baseline == "resnet18" and results.variants == ["logreg"]
    short = plan.sha256[:12]
    for name in ("report.html", "report.md", "table.tex"):
        text = (run_dir / name).read_text()
        assert "Pre-registered analysis" in text and short in text, name
        assert "Exploratory" not in text, name
    out = folder / "analysis.json"
    assert main(["compare", str(run_dir), "--json", str(out)]) == 0
    assert "Pre-registered analysis: plan sha256 " + short in " ".join(capsys.readouterr().out.split())
    record = json.loads(out.read_text())["comparison"]["registration"]
    assert (
        record["status"] == "pre-registered"
        and record["sha256"] == plan.sha256
        and record["plan"] == plan.content
    )


@pytest.mark.parametrize(
    "flags, deviation",
    [
        (["--metric", "balanced_accuracy"], "metric balanced_accuracy (plan: auc)"),
        (["--alpha", "0.1"], "alpha 0.1 (plan: 0.05)"),
        (["--rope", "0.05"], "rope 0.05 (plan: 0.01)"),
    ],
)
def test_another_metric_rope_or_alpha_is_exploratory_in_every_format(
    planned_run, tmp_path, flags, deviation, capsys
):
    _, _, run_dir, _ = planned_run
    copy = tmp_path / "run"
    import shutil

    shutil.copytree(run_dir, copy)
    out = tmp_path / "analysis.json"
    assert main(["report", str(copy), *flags, "--json", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "Exploratory analysis" in printed and deviation in printed
    record = json.loads(out.read_text())["comparison"]["registration"]
    assert record["status"] == "exploratory" and deviation in record["deviations"]
    for name in ("report.html", "report.md", "table.tex"):
        text = (copy / name).read_text()
        assert "Exploratory analysis" in text and "Pre-registered analysis:" not in text, name


def test_a_flag_that_changes_the_plan_is_refused_before_training(planned_run, tmp_path, capsys):
    _, plan_file, _, archive = planned_run
    out = tmp_path / "other"
    code = main(
        ["evaluate", "--plan", str(plan_file), "--data", str(archive), "--folds", "3", "--out", str(out)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "--folds 3 (plan: 2)" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    code = main(
        ["evaluate", "--plan", str(plan_file), "--data", str(archive), "fc_attention", "--out", str(out)]
    )
    assert code == 2 and "VARIANT ... fc_attention (plan: logreg)" in capsys.readouterr().err


def test_a_plan_cannot_be_registered_after_a_run_began(planned_run, tmp_path):
    _, plan_file, _, archive = planned_run
    out = tmp_path / "unplanned"
    settings = dict(data=str(archive), baseline="resnet18", epochs=1, out=out, progress=False, **{
        k: v for k, v in DESIGN.items()
    })  # fmt: skip
    cvkit.evaluate(["logreg"], **settings)
    with pytest.raises(ConfigError, match="started without a plan"):
        cvkit.evaluate(["logreg"], registration=read_analysis_plan(plan_file), **settings)


def test_the_python_api_refuses_a_run_that_is_not_the_registered_one(planned_run, tmp_path):
    _, plan_file, _, archive = planned_run
    with pytest.raises(
        ConfigError, match=r"not the pre-registered one: folds 3 \(plan: 2\); repeats 1 \(plan: 2\)"
    ):
        cvkit.evaluate(
            ["logreg"], data=str(archive), folds=3, repeats=1, out=tmp_path / "x",
            registration=read_analysis_plan(plan_file), progress=False,
        )  # fmt: skip
    assert not (tmp_path / "x").exists()


def test_cvkit_plan_write_fixes_the_recommended_or_chosen_design_and_the_runs_models(tmp_path, capsys):
    path = tmp_path / "plan.toml"
    argv = ["plan", "--samples", "428", "--fold-sd", "0.05", "--min-effect", "0.08", "--variant", "logreg"]
    assert main([*argv, "--baseline", "resnet18", "--write", str(path)]) == 0
    plan = read_analysis_plan(path)
    priors = plan_from_priors(n_samples=428, fold_sd=0.05, min_effect=0.08)
    recommended = priors.recommended
    assert plan.design == dict(folds=recommended.n_folds, repeats=recommended.n_repeats, seeds=1, seed=0)
    assert plan.models == dict(baseline="resnet18", variants=["logreg"])
    assert plan.content["power"]["projected"] == pytest.approx(recommended.power, abs=1e-4)
    assert main([*argv, "--baseline", "resnet18", "--design", "10x3x1", "--write", str(path)]) == 0
    assert read_analysis_plan(path).design["folds"] == 10
    assert main([*argv, "--write", str(path)]) == 2  # no baseline to fix
    assert "--baseline NAME" in capsys.readouterr().err
    assert main([*argv, "--baseline", "resnet18", "--design", "5by3", "--write", str(path)]) == 2


def test_a_sequential_design_can_be_pre_registered_and_run(planned_run, tmp_path, capsys):
    _, _, _, archive = planned_run
    path = tmp_path / "plan.toml"
    argv = ["plan", "--samples", "60", "--fold-sd", "0.1", "--folds", "2", "--min-effect", "0.1"]
    models = ["--variant", "logreg", "--baseline", "resnet18"]
    assert main([*argv, *models, "--until-decided", "--max-repeats", "3", "--write", str(path)]) == 0
    plan = read_analysis_plan(path)
    assert plan.design == dict(folds=2, repeats=3, seeds=1, seed=0, sequential=True)
    assert plan.analysis["stopping_rule"].startswith("sequential (cvkit evaluate --until-decided)")
    out = tmp_path / "run"
    run = ["evaluate", "--plan", str(path), "--data", str(archive), "--epochs", "1", "--out", str(out)]
    assert main([*run, "--max-repeats", "4"]) == 2
    assert "fixes --max-repeats 3" in capsys.readouterr().err
    assert main(run) == 0
    results = cvkit.Results(out)
    assert results.registration["sha256"] == plan.sha256
    assert results.sequential["rule"]["max_repeats"] == 3 and results.run["design"]["repeats"] == 3
    text = (out / "report.md").read_text()
    assert "Pre-registered analysis" in text and "Sequential design:" in text
