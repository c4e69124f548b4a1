"""The recipe grid (``--vary``): drop_last, parsing, shared splits, reuse and the across-recipe analysis."""

import html
import importlib.util
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from rich.console import Console

import cvkit
from cvkit import escape
from cvkit.cli import main
from cvkit.errors import ConfigError, CvkitError, OptionError
from cvkit.multiverse import (
    ONE_RECIPE,
    analyse_cells,
    analyse_grid,
    cell_name,
    default_grid_dir,
    describe_grid,
    grid_cost,
    grid_record,
    identical_message,
    parse_vary,
    recipe_cells,
)
from cvkit.planning import (
    grid_power,
    plan_design,
    plan_from_priors,
    read_analysis_plan,
    write_analysis_plan,
)
from cvkit.report import forest_figure, render_grid, write_grid_reports
from cvkit.stats import PairedJobScores, design_power, recipe_heterogeneity
from cvkit.trainers import TrainConfig
from cvkit.trainers._torch import _batches


def test_drop_last_drops_an_incomplete_batch_and_a_batch_of_one():
    order = torch.arange(33)
    assert [len(b) for b in _batches(order, 16)] == [16, 16]  # the batch of 1: BatchNorm cannot train on it
    assert [len(b) for b in _batches(order, 16, drop_last=True)] == [16, 16]
    order = torch.arange(37)
    assert [len(b) for b in _batches(order, 16)] == [16, 16, 5]
    assert [len(b) for b in _batches(order, 16, drop_last=True)] == [16, 16]
    assert [len(b) for b in _batches(torch.arange(10), 16, drop_last=True)] == [10]  # never no batch at all


def test_drop_last_enters_the_recipe_only_when_true():
    assert "drop_last" not in TrainConfig().as_dict()
    assert TrainConfig(drop_last=True).as_dict()["drop_last"] is True


def test_a_drop_last_run_trains_again_and_a_default_run_resumes(tiny, tmp_path):
    fast = dict(folds=2, repeats=1, epochs=1, batch_size=16)
    first = cvkit.evaluate([], data=tiny, out=tmp_path / "run", **fast)
    again = cvkit.evaluate([], data=tiny, out=tmp_path / "run", **fast)
    assert (again.counts.trained, again.counts.resumed) == (0, first.counts.trained)
    dropped = cvkit.evaluate([], data=tiny, out=tmp_path / "dropped", drop_last=True, **fast)
    assert dropped.counts.trained == first.counts.trained and dropped.counts.reused == 0


# --- the grid: parsing and cells -------------------------------------------------------------


def test_vary_is_typed_by_the_recipe_field_and_makes_the_cartesian_product():
    vary = parse_vary(["batch_size=16,32", "drop_last=true,no", "lr=1e-3,0.01"])
    assert vary == {"batch_size": [16, 32], "drop_last": [True, False], "lr": [1e-3, 0.01]}
    cells = recipe_cells(vary)
    assert len(cells) == 8 and cells[0] == {"batch_size": 16, "drop_last": True, "lr": 1e-3}
    assert cell_name(cells[1]) == "batch_size=16,drop_last=true,lr=0.01"
    assert describe_grid({"batch_size": [16, 32], "drop_last": [True, False]}) == (
        "batch_size {16, 32} x drop_last {yes, no}"
    )
    assert parse_vary({"augment": ["flip", "none"]}) == {"augment": ["flip", "none"]}


@pytest.mark.parametrize(
    "spec, message",
    [
        ("colour=red,blue", "no recipe option"),
        ("batch_size", "NAME=V1,V2"),
        ("batch_size=16,big", "not a int"),
        ("batch_size=1,16", "at least 2"),
        ("drop_last=maybe", "true or false"),
        ("augment=rotate", "choose one of"),
    ],
)
def test_a_bad_vary_is_one_line_naming_the_flag(spec, message):
    with pytest.raises(OptionError, match=message) as caught:
        parse_vary([spec])
    assert caught.value.option == "vary"


def test_a_bad_vary_on_the_command_line_exits_2(tiny_npz, capsys):
    code = main(["evaluate", "--data", str(tiny_npz), "--vary", "colour=red", "--report", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "--vary" in err and "colour" in err


# --- known truth on synthetic per-job scores (no training) ----------------------------------


_spec = importlib.util.spec_from_file_location(
    "recipe_grid_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "recipe_grid.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
synthetic_grid, analyse, claim_rates = bench.synthetic_grid, bench.analyse, bench.claim_rates


def test_an_advantage_at_one_batch_size_only_is_recipe_dependent():
    rng = np.random.default_rng(3)
    dependent = 0
    for _ in range(20):
        report = analyse(synthetic_grid(rng, [0.08, 0.08, 0.0, 0.0], structure="repeat"))
        (variant,) = report.variants
        assert not variant.robust
        dependent += variant.answer == "the advantage depends on the recipe" and variant.recipe_dependent
    assert dependent >= 18
    assert "beats resnet18 in" in variant.sentence
    assert "batch_size {16, 32} x drop_last {yes, no}" in variant.sentence
    assert variant.heterogeneity.interaction_variance > 0


def test_an_advantage_in_every_cell_holds_in_every_recipe():
    report = analyse(synthetic_grid(np.random.default_rng(4), [0.08] * 4, noise=0.01))
    (variant,) = report.variants
    assert variant.robust and variant.answer == "holds in every recipe"
    t = variant.overall.ttest
    assert t.low > 0 and f"[{t.low:+.3f}, {t.high:+.3f}]" in variant.sentence


def binomial_ceiling(rate, n):
    return rate + 2.5 * np.sqrt(rate * (1 - rate) / n)


@pytest.mark.parametrize("structure", bench.STRUCTURES)
def test_no_advantage_anywhere_is_called_better_at_most_at_the_nominal_rate(structure):
    n = 300
    rates = claim_rates([0.0] * 4, n, seed=5, structure=structure)
    assert rates["cell_better"] <= binomial_ceiling(0.05, n)  # one Holm family over the cells
    assert rates["overall_better"] <= binomial_ceiling(0.05, n)
    assert rates["robust"] <= binomial_ceiling(0.05, n)
    assert rates["heterogeneous"] <= binomial_ceiling(0.05, n)  # the recipe x model test keeps its level
    assert rates["depends"] <= binomial_ceiling(0.05, n)


def test_an_advantage_everywhere_is_not_called_recipe_dependent_beyond_the_nominal_rate():
    n = 200
    rates = claim_rates([0.05] * 4, n, seed=8)
    assert rates["depends"] <= binomial_ceiling(0.05, n)  # cells that miss it by chance do not count
    assert rates["overall_better"] > 0.9


def test_an_advantage_in_one_cell_only_is_never_called_robust():
    n = 200
    rates = claim_rates([0.03, 0.0, 0.0, 0.0], n, seed=6)
    assert rates["robust"] <= binomial_ceiling(0.05, n)


def test_cells_must_hold_the_same_jobs():
    rng = np.random.default_rng(7)
    cells = synthetic_grid(rng, [0, 0, 0, 0])
    cells[1] = synthetic_grid(rng, [0], folds=4)[0]  # other jobs
    with pytest.raises(ValueError, match="same"):
        analyse(cells)


# --- end to end on a tiny grid ----------------------------------------------------------------

TINY_GRID = dict(folds=2, repeats=1, epochs=1)


def test_a_tiny_grid_shares_splits_and_a_wider_grid_trains_only_its_new_cells(tiny, tmp_path):
    out = tmp_path / "grid"
    first = cvkit.evaluate(
        "plugins/fc_attention.py", vary={"batch_size": [16, 32]}, out=out, data=tiny, **TINY_GRID
    )
    assert isinstance(first, cvkit.GridResults)
    assert [cell_name(c) for c, _ in first.cells] == ["batch_size=16", "batch_size=32"]
    assert first.counts == dict(trained=8, resumed=0, reused=0)
    (a, b) = (r for _, r in first.cells)
    assert a.plan == b.plan and a.run_dir.parent == b.run_dir.parent == out
    wider = cvkit.evaluate(
        "plugins/fc_attention.py", vary=["batch_size=16,32,8"], out=out, data=tiny, **TINY_GRID
    )
    assert [r.counts.trained for _, r in wider.cells] == [0, 0, 4]
    assert wider.counts == dict(trained=4, resumed=8, reused=0)
    report = analyse_grid(wider)
    (variant,) = report.variants
    assert len(variant.cells) == 3 and variant.sentence.startswith("fc_attention beats resnet18 in ")
    record = grid_record(report)
    written = write_grid_reports(record, out)
    assert "grid average" in written["md"].read_text() and (out / "grid-forest-1.png").stat().st_size > 0
    assert "<img" in written["html"].read_text()
    assert json.loads(written["json"].read_text())["cells"][2]["recipe"] == {"batch_size": 8}
    console = Console(file=io.StringIO(), width=80)
    render_grid(record, console)
    text = console.file.getvalue()
    assert "batch_size=8" in text and variant.sentence.split(";")[0] in text
    assert max(len(line) for line in text.splitlines()) <= 80
    figure = forest_figure(record)
    assert len(figure.axes[0].get_yticklabels()) == 4


def test_vary_on_the_command_line(tiny_npz, tmp_path, capsys):
    out = tmp_path / "grid"
    argv = ["evaluate", "plugins/fc_attention.py", "--data", str(tiny_npz), "--folds", "2", "--repeats", "1"]
    argv += ["--epochs", "1", "--vary", "drop_last=true,false", "--out", str(out)]
    # a format cvkit does not write: one line, exit 2, before any training
    assert main([*argv, "--report", "md,pdf"]) == 2
    err = capsys.readouterr().err
    assert "--report pdf: choose from html, md, latex" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert main([*argv, "--report", "md,html"]) == 0
    text = capsys.readouterr().out
    assert "drop_last=true" in text and "2 recipe cells: 8 jobs trained" in text
    # every training part of the tiny set fits in one batch of 32: drop_last cannot matter
    assert "gave identical predictions for every model and job: one recipe in disguise" in " ".join(
        text.split()
    )
    assert (out / "drop_last=false").is_dir() and (out / "grid.md").exists() and (out / "grid.html").exists()
    predictions = pd.read_csv(out / "grid-predictions.csv")
    assert set(predictions.recipe_cell) == {"drop_last=true", "drop_last=false"}
    assert len(predictions) == 2 * predictions[predictions.recipe_cell == "drop_last=true"].shape[0]
    assert not (out / "grid.tex").exists()  # --report md,html: no LaTeX
    # --report as single runs take it: the grid's record and predictions always, the documents asked for
    for path in (out / "grid.md", out / "grid.html", out / "grid.json"):
        path.unlink()
    assert main([*argv, "--report", "latex"]) == 0
    printed = capsys.readouterr().out
    # long paths wrap anywhere at 80 columns: file names are looked for with the breaks removed
    unbroken = "".join(printed.split())
    assert "0 jobs trained" in " ".join(printed.split())
    assert "grid.tex" in unbroken and "grid.md" not in unbroken
    assert {p.name for p in out.glob("grid*") if p.is_file()} == {
        "grid.json",
        "grid.tex",
        "grid-predictions.csv",
        "grid-forest-1.png",  # the PNG: the first run's
    }


def test_the_default_grid_folder_names_the_data_and_the_baseline_not_the_varied_recipe():
    folder = default_grid_dir("reports", ["plugins/fc_attention.py"], "resnet18", "breastmnist")
    assert folder == Path("reports/grid-fc_attention-vs-resnet18-breastmnist")
    # another data set or baseline: another grid (its cells would hold other runs)
    assert default_grid_dir("reports", ["plugins/fc_attention.py"], "resnet18", "demo") != folder
    assert default_grid_dir("reports", ["plugins/fc_attention.py"], "densenet121", "breastmnist") != folder


def test_cvkit_plan_states_the_cost_of_a_grid(capsys):
    argv = ["plan", "--samples", "428", "--fold-sd", "0.03", "--min-effect", "0.05"]
    argv += ["--seconds-per-job", "20"]
    assert main([*argv, "--vary", "batch_size=16,32", "--vary", "drop_last=true,false"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "a grid of 4 recipe cells (batch_size {16, 32} x drop_last {yes, no})" in text
    assert "80 trainings, about 0.4 h" in text and "Holm family of 4" in text
    assert main([*argv, "--vary", "batch_size=big"]) == 2


GRID_PRIORS = dict(n_samples=428, fold_sd=0.03, min_effect=0.05)


@pytest.mark.parametrize("n_variants", [1, 2])
def test_a_grid_plan_projects_each_cell_at_holms_first_step_and_the_average_conservatively(n_variants):
    plan = plan_from_priors(**GRID_PRIORS, n_variants=n_variants)
    vary = {"batch_size": [16, 32], "drop_last": [True, False]}
    design = plan.recommended
    power = grid_power(plan, design, vary)
    where = dict(n_folds=design.n_folds, n_repeats=design.n_repeats, n_seeds=design.n_seeds)
    # one cell's verdict: the first of a Holm family of cells x variants
    assert power.n_cells == 4 and power.cell_alpha == pytest.approx(0.05 / (4 * n_variants))
    expected = design_power(plan.variance, 0.05, alpha=0.05 / (4 * n_variants), method=plan.method, **where)
    assert power.cell_power == pytest.approx(expected)
    assert power.cell_power < design.power and power.cell_detectable > design.detectable
    # the grid average, tested over the variants, with the single-design variance: the lower bound
    assert power.average_alpha == pytest.approx(0.05 / n_variants)
    assert power.average_power == pytest.approx(design.power) and design.reaches
    text = " ".join(grid_cost(power).split())
    assert f"one cell's verdict {100 * power.cell_power:.0f}%" in text
    assert f"the grid average's at least {100 * design.power:.0f}%" in text
    assert f"alpha {0.05 / (4 * n_variants):.3g}" in text and "conservative" in text


def test_cvkit_plan_states_a_grids_power_in_the_terminal_the_json_and_the_plan_file(tmp_path, capsys):
    argv = [*PRIORS, "--vary", "batch_size=16,32", "--vary", "drop_last=true,false"]
    plan_file, plan_json = tmp_path / "plan.toml", tmp_path / "plan.json"
    assert main([*argv, "--write", str(plan_file), "--json", str(plan_json)]) == 0
    text = " ".join(capsys.readouterr().out.split())
    # the design written (--design 2x1x1), not the recommended one, is the one stated
    plan = plan_from_priors(n_samples=60, fold_sd=0.1, min_effect=0.1, folds=2)
    power = grid_power(plan, plan_design(plan, 2, 1, 1), parse_vary(argv[-3::2]))
    assert "at 2 folds x 1 repeat x 1 seed per split" in text
    assert f"one cell's verdict {100 * power.cell_power:.0f}%" in text
    recorded = json.loads(plan_json.read_text())["plan"]["grid"]
    assert recorded["cell_power"] == pytest.approx(power.cell_power) and recorded["n_cells"] == 4
    assert recorded["average_power"] == pytest.approx(power.average_power)
    assert recorded["cell_alpha"] == pytest.approx(0.0125) and "conservative" in recorded["basis"]
    registered = read_analysis_plan(plan_file)
    stated = registered.content["power"]
    assert stated["cell_alpha"] == pytest.approx(0.0125)
    assert stated["cell_projected"] == pytest.approx(power.cell_power, abs=1e-4)
    assert stated["projected"] == pytest.approx(power.average_power, abs=1e-4)
    assert "single-design variance" in stated["grid_basis"]
    for name in ("again.toml", "again.json"):  # the new keys round-trip with the hash
        write_analysis_plan(registered, tmp_path / name)
        assert read_analysis_plan(tmp_path / name).sha256 == registered.sha256


def test_a_plan_without_a_grid_is_written_as_before(tmp_path, capsys):
    plain, plain_json = tmp_path / "plain.toml", tmp_path / "plain.json"
    assert main([*PRIORS, "--write", str(plain), "--json", str(plain_json)]) == 0
    # the content hash this command wrote before grids stated their own power (cvkit at 4decc4f)
    assert (
        read_analysis_plan(plain).sha256 == "a775895696e39cefc03bd6f2c095692b02bf7a513bc4df7fc42810d38476c199"
    )
    assert not any(key.startswith(("cell_", "grid_")) for key in read_analysis_plan(plain).content["power"])
    assert "grid" not in json.loads(plain_json.read_text())["plan"]
    assert "one cell's verdict" not in capsys.readouterr().out


def test_hostile_names_are_escaped_in_every_grid_report(tmp_path):
    rng = np.random.default_rng(9)
    name = "<script>x</script>|*[a](b)$"
    cells = recipe_cells(bench.GRID)
    jobs = {name: synthetic_grid(rng, [0.0] * 4)}
    report = analyse_cells(cells, jobs, vary=bench.GRID, baseline="base|<b>")
    record = grid_record(report)
    written = write_grid_reports(record, tmp_path)
    assert "<script>" not in written["html"].read_text() and "&lt;script&gt;" in written["html"].read_text()
    markdown = written["md"].read_text()
    assert "<script>" not in markdown and "\\|" in markdown
    console = Console(file=io.StringIO(), width=80)
    render_grid(record, console)
    assert "script" in console.file.getvalue()  # printed as written, not taken as markup
    assert json.loads(written["json"].read_text())["variants"][0]["variant"] == name
    latex = written["latex"].read_text()
    assert "<script>" not in latex and "\\textless{}script\\textgreater{}" in latex and "\\$" in latex
    assert "base|\\textless{}b\\textgreater{}" in latex and "\N{GREEK CAPITAL LETTER DELTA}" not in latex


def _record(seed=9):
    cells = recipe_cells(bench.GRID)
    report = analyse_cells(
        cells, {"v": synthetic_grid(np.random.default_rng(seed), [0.0] * 4)}, vary=bench.GRID, baseline="b"
    )
    return grid_record(report)


def test_every_grid_report_names_the_recipe_x_model_test_that_ran(tmp_path):
    # 4 cells on 15 splits: Hotelling's test decides; its name, F and degrees of freedom are in the
    # record, and each document says which test the p-value is from.
    record = _record()
    het = record["variants"][0]["heterogeneity"]
    assert het["method"] == "hotelling" and het["df"] == [3.0, 12.0] and het["statistic"] >= 0
    written = write_grid_reports(record, tmp_path, ["html", "md"])
    for path in (written["md"], written["html"]):
        assert "Hotelling" in path.read_text() and f"p = {het['pvalue']:.3f}" in path.read_text()
    console = Console(file=io.StringIO(), width=80)
    render_grid(record, console)
    assert "Hotelling" in console.file.getvalue() and "max-deviation" not in console.file.getvalue()


@pytest.mark.parametrize(
    "formats, files",
    [
        (["md"], {"grid.json", "grid.md", "grid-forest-1.png"}),
        (["html"], {"grid.json", "grid.html"}),  # the forest plot is embedded: no PNG file
        (["latex"], {"grid.json", "grid.tex"}),
        ([], {"grid.json"}),  # --report none: the grid's record alone
        (["html", "md", "latex"], {"grid.json", "grid.html", "grid.md", "grid-forest-1.png", "grid.tex"}),
    ],
)
def test_the_grid_writes_the_documents_asked_for_and_always_its_record(tmp_path, formats, files):
    written = write_grid_reports(_record(), tmp_path, formats)
    assert {path.name for path in tmp_path.iterdir()} == files
    assert set(written) == {"json", *formats}


def test_an_unknown_grid_report_format_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(CvkitError, match="--report pdf: choose from html, md, latex"):
        write_grid_reports(_record(), tmp_path, ["md", "pdf"])
    assert not any(tmp_path.iterdir())


def test_a_field_both_varied_and_fixed_is_refused(tiny_npz, tiny, tmp_path, capsys):
    argv = ["evaluate", "--data", str(tiny_npz), "--batch-size", "8", "--vary", "batch_size=16,32"]
    assert main(argv) == 2
    assert "--vary" in capsys.readouterr().err
    with pytest.raises(OptionError, match="both varied and fixed"):
        cvkit.evaluate([], vary={"batch_size": [16, 32]}, batch_size=8, out=tmp_path / "g", data=tiny)


def test_the_variance_decomposition_recovers_known_components():
    rng = np.random.default_rng(10)
    estimates = []
    for _ in range(300):
        shared, interaction = rng.normal(0, 0.03, 15), rng.normal(0, 0.02, 4)
        cells = [
            PairedJobScores(
                repeat=np.repeat(range(3), 5),
                fold=np.tile(range(5), 3),
                seed=np.zeros(15, dtype=int),
                baseline=np.zeros(15),
                variant=shared + interaction[c] + rng.normal(0, 0.02, 15),
                n_train=120,
                n_test=30,
            )  # fmt: skip
            for c in range(4)
        ]
        h = recipe_heterogeneity(cells)
        estimates.append((h.split_variance, h.residual_variance, h.interaction_variance))
    split, residual, interaction = np.mean(estimates, axis=0)
    assert split == pytest.approx(0.03**2, rel=0.15) and residual == pytest.approx(0.02**2, rel=0.1)
    assert 0.5 * 0.02**2 < interaction <= 1.1 * 0.02**2  # conservative: the corrected t's noise


# --- the grid in a pre-registered plan (issue 20) ---------------------------------------------

PLAN_TOML = """
[analysis]
metric = "auc"
alpha = 0.05
min_effect = 0.1
decision_rule = "as written"
stopping_rule = "fixed design: every job runs, one analysis at the end"

[models]
baseline = "resnet18"
variants = ["logreg"]

[design]
folds = 2
repeats = 1
seeds = 1
seed = 0

[power]
target = 0.8
projected = 0.5
source = "stated priors"
"""


def test_a_plan_without_a_grid_keeps_its_hash_and_a_grid_is_part_of_the_content(tmp_path):
    plain = tmp_path / "plain.toml"
    plain.write_text(PLAN_TOML)
    registered = read_analysis_plan(plain)
    assert "vary" not in registered.design
    # the hash this file had before a grid could be registered (cvkit at d2b82b3): unchanged
    assert registered.sha256 == "83f5ba62905076357daa5ccc5b6ffb5bfc7c48e988e9ed6af07421c1e05763b9"
    gridded = tmp_path / "grid.toml"
    gridded.write_text(PLAN_TOML.replace("seed = 0\n", "seed = 0\nvary = { drop_last = [true, false] }\n"))
    with_grid = read_analysis_plan(gridded)
    assert with_grid.design["vary"] == {"drop_last": [True, False]}
    assert with_grid.sha256 != registered.sha256
    for name in ("again.toml", "again.json"):  # written and read back: the same content and hash
        write_analysis_plan(with_grid, tmp_path / name)
        assert read_analysis_plan(tmp_path / name).sha256 == with_grid.sha256
    # values are typed as the recipe takes them: an integer learning rate is the float
    gridded.write_text(PLAN_TOML.replace("seed = 0\n", "seed = 0\nvary = { lr = [1, 0.1] }\n"))
    assert read_analysis_plan(gridded).design["vary"] == {"lr": [1.0, 0.1]}


@pytest.mark.parametrize(
    "vary, words",
    [
        ("vary = { colour = [1, 2] }", "[design] vary: 'colour' is no recipe option"),
        ('vary = { batch_size = ["big", 32] }', "[design] vary: batch_size='big': not a int"),
        ("vary = { batch_size = 16 }", "[design] vary: batch_size: give a list of values"),
        ("vary = { batch_size = [16] }", "[design] vary: a grid needs two cells or more"),
        ('vary = "batch_size=16,32"', "[design] vary must be a dict"),
        ("vary = { drop_last = [true, false] }\nsequential = true", "cannot be sequential"),
    ],
)
def test_a_bad_grid_in_a_plan_file_is_one_line_naming_the_file(tmp_path, vary, words):
    path = tmp_path / "plan.toml"
    path.write_text(PLAN_TOML.replace("seed = 0\n", f"seed = 0\n{vary}\n"))
    with pytest.raises(ConfigError) as caught:
        read_analysis_plan(path)
    assert str(caught.value).startswith(f"{path}: ") and words in str(caught.value)
    assert "\n" not in str(caught.value)


PRIORS = ["plan", "--samples", "60", "--fold-sd", "0.1", "--min-effect", "0.1", "--folds", "2"]
PRIORS += ["--baseline", "resnet18", "--variant", "logreg", "--design", "2x1x1"]


def test_cvkit_plan_write_pre_registers_the_grid(tmp_path, capsys):
    plan_file = tmp_path / "plan.toml"
    argv = [*PRIORS, "--vary", "batch_size=16,32", "--vary", "drop_last=true,false"]
    assert main([*argv, "--write", str(plan_file)]) == 0
    assert "vary = { batch_size = [16, 32], drop_last = [true, false] }" in plan_file.read_text()
    registered = read_analysis_plan(plan_file)
    assert registered.design["vary"] == {"batch_size": [16, 32], "drop_last": [True, False]}
    assert main([*PRIORS, "--write", str(tmp_path / "plain.toml")]) == 0
    assert "vary" not in read_analysis_plan(tmp_path / "plain.toml").design
    capsys.readouterr()
    # a sequential design cannot be a grid: one line, exit 2
    code = main([*argv[:-4], "--until-decided", "--vary", "drop_last=true,false", "--write", str(plan_file)])
    err = capsys.readouterr().err
    assert code == 2 and "--vary" in err and "--until-decided" in err and len(err.strip().splitlines()) == 1


@pytest.fixture
def grid_plan(tmp_path):
    """A pre-registered plan with a 2-cell grid, for the tiny set (2 folds x 1 repeat)."""
    plan_file = tmp_path / "plan.toml"
    assert main([*PRIORS, "--vary", "drop_last=true,false", "--write", str(plan_file)]) == 0
    return plan_file


def test_evaluate_plan_runs_the_registered_grid_and_every_output_says_so(
    grid_plan, tiny_npz, tmp_path, capsys
):
    registered = read_analysis_plan(grid_plan)
    out = tmp_path / "grid"
    argv = ["evaluate", "--plan", str(grid_plan), "--data", str(tiny_npz), "--epochs", "1"]
    assert main([*argv, "--batch-size", "16", "--out", str(out), "--report", "md,html"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"Pre-registered analysis: plan sha256 {registered.sha256[:12]}" in text
    assert "Recipe grid: drop_last {yes, no}" in text and "2 recipe cells" in text
    for cell in ("drop_last=true", "drop_last=false"):
        assert cvkit.load(out / cell).registration["sha256"] == registered.sha256
    assert "Pre-registered analysis: plan sha256" in (out / "grid.md").read_text()
    assert "Pre-registered analysis: plan sha256" in (out / "grid.html").read_text()
    record = json.loads((out / "grid.json").read_text())
    assert record["registration"]["sha256"] == registered.sha256
    assert record["registration"]["status"] == "pre-registered"
    # the same grid given again on the command line (in another order) is the plan's: it resumes
    assert main([*argv, "--batch-size", "16", "--out", str(out), "--vary", "drop_last=no,yes"]) == 0
    assert "0 jobs trained" in capsys.readouterr().out


def test_a_grid_that_contradicts_the_plan_is_refused_naming_both(grid_plan, tiny_npz, tmp_path, capsys):
    argv = ["evaluate", "--plan", str(grid_plan), "--data", str(tiny_npz), "--out", str(tmp_path / "g")]
    assert main([*argv, "--vary", "batch_size=16,32"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{grid_plan} fixes the grid drop_last {{yes, no}}" in err
    assert "--vary batch_size=16,32 asks for the grid batch_size {16, 32}" in err
    plain = tmp_path / "plain.toml"
    assert main([*PRIORS, "--write", str(plain)]) == 0
    capsys.readouterr()
    assert (
        main(["evaluate", "--plan", str(plain), "--data", str(tiny_npz), "--vary", "drop_last=true,false"])
        == 2
    )
    err = " ".join(capsys.readouterr().err.split())
    assert f"{plain} fixes a single recipe (no grid)" in err and "drop_last {yes, no}" in err
    assert not (tmp_path / "g").exists()


def test_vary_with_until_decided_is_one_line_and_exit_2(tiny_npz, capsys):
    argv = ["evaluate", "--data", str(tiny_npz), "--until-decided", "--vary", "drop_last=true,false"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--vary" in err and "--until-decided" in err and len(err.strip().splitlines()) == 1


# --- the Python API: cvkit.evaluate(vary=...) -------------------------------------------------


@pytest.mark.parametrize(
    "vary, words",
    [
        ({"batch_size": 16}, "batch_size: give a list of values"),
        ({"colour": ["red", "blue"]}, "'colour' is no recipe option"),
        ({"batch_size": [16, "big"]}, "batch_size='big': not a int"),
        ({"drop_last": [True, 1]}, "drop_last=1: not a bool"),
        ({"batch_size": [16]}, "a grid needs two cells or more"),
        (16, "give a dict of field -> values"),
    ],
)
def test_a_bad_vary_in_python_is_one_config_error_before_any_data_is_read(vary, words, tmp_path):
    with pytest.raises(ConfigError, match=re.escape(words)) as caught:
        cvkit.evaluate([], vary=vary, data=tmp_path / "absent.npz", out=tmp_path / "g")
    assert "\n" not in str(caught.value)


def test_the_python_api_refuses_until_decided_and_a_grid_the_plan_does_not_fix(tiny, tmp_path):
    from cvkit.planning import SequentialRule

    with pytest.raises(ConfigError, match="until_decided"):
        cvkit.evaluate([], vary={"drop_last": [True, False]}, until_decided=SequentialRule(2), data=tiny)
    path = tmp_path / "plan.toml"
    path.write_text(PLAN_TOML.replace("seed = 0\n", "seed = 0\nvary = { drop_last = [true, false] }\n"))
    registered = read_analysis_plan(path)
    with pytest.raises(ConfigError, match=r"fixes the grid drop_last \{yes, no\}; this grid asks for"):
        cvkit.evaluate(
            "logreg", vary={"batch_size": [16, 32]}, registration=registered, data=tiny, folds=2,
            repeats=1, out=tmp_path / "g",
        )  # fmt: skip
    # one run outside the plan's grid is not the registered one either
    path.write_text(PLAN_TOML.replace("seed = 0\n", "seed = 0\nvary = { batch_size = [16, 32] }\n"))
    with pytest.raises(ConfigError, match=r"batch_size 8 \(plan: \[16, 32\]\)"):
        cvkit.evaluate(
            "logreg", registration=read_analysis_plan(path), data=tiny, folds=2, repeats=1,
            out=tmp_path / "one", batch_size=8,
        )  # fmt: skip
    assert not (tmp_path / "one").exists()


# --- cells that train identically --------------------------------------------------------------


def test_cells_that_train_identically_are_named_and_counted_once(tiny, tmp_path):
    # Each training part of the tiny set holds fewer than 64 samples: at batch size 64 it is one
    # batch, which drop_last keeps either way; at 16 the last, incomplete batch differs.
    out = tmp_path / "grid"
    grid = cvkit.evaluate(
        "logreg", vary={"batch_size": [16, 64], "drop_last": [True, False]}, out=out, data=tiny, **TINY_GRID
    )
    report = analyse_grid(grid)
    assert [[cell_name(c) for c in group] for group in report.identical] == [
        ["batch_size=64,drop_last=true", "batch_size=64,drop_last=false"]
    ]
    (variant,) = report.variants
    assert [cell_name(c.cell) for c in variant.cells] == [
        "batch_size=16,drop_last=true", "batch_size=16,drop_last=false", "batch_size=64,drop_last=true",
    ]  # fmt: skip
    assert variant.cells[0].verdict.family_size == 3  # the duplicate does not widen the Holm family
    assert f"in {variant.n_better} of 3 recipes" in variant.sentence
    assert "(3 distinct recipes)" in variant.sentence
    message = (
        "cells drop_last=true and drop_last=false (batch_size=64) gave identical predictions for every "
        "model and job: one recipe in disguise; the grid counts them as one"
    )
    record = grid_record(report)
    assert record["identical"] == [
        dict(cells=["batch_size=64,drop_last=true", "batch_size=64,drop_last=false"], message=message)
    ]
    assert record["cells"][2]["label"] == "batch_size=64,drop_last=true (= drop_last=false)"
    assert record["cells"][2]["also"] == ["batch_size=64,drop_last=false"]
    written = write_grid_reports(record, out)
    assert escape.markdown(message) in written["md"].read_text()
    assert html.escape(message) in written["html"].read_text()
    assert json.loads(written["json"].read_text())["identical"][0]["message"] == message
    console = Console(file=io.StringIO(), width=80)
    render_grid(record, console)
    assert message in " ".join(console.file.getvalue().split())
    # the same cells counted as they were run: the batch-16 cells (which differ) stay apart
    assert len(analyse_grid(cvkit.GridResults(out, grid.vary, grid.cells[:2])).cells) == 2


def test_a_grid_whose_cells_all_train_identically_is_one_recipe(tiny, tmp_path):
    grid = cvkit.evaluate(
        "logreg", vary={"drop_last": [True, False]}, batch_size=64, out=tmp_path / "g", data=tiny, **TINY_GRID
    )
    report = analyse_grid(grid)
    (variant,) = report.variants
    assert len(report.cells) == 1 and variant.heterogeneity is None and not variant.robust
    assert variant.answer == ONE_RECIPE and variant.answer in variant.sentence
    record = grid_record(report)
    assert record["variants"][0]["heterogeneity"] is None
    written = write_grid_reports(record, tmp_path / "g")
    assert "identical predictions" in written["md"].read_text()
    console = Console(file=io.StringIO(), width=80)
    render_grid(record, console)
    assert "recipe x model" not in console.file.getvalue()


def test_the_warning_names_the_settings_that_differ_and_those_shared():
    group = [
        {"batch_size": 16, "drop_last": True, "lr": 0.01},
        {"batch_size": 16, "drop_last": False, "lr": 0.01},
        {"batch_size": 16, "drop_last": False, "lr": 0.1},
    ]
    assert identical_message(group).startswith(
        "cells drop_last=true,lr=0.01, drop_last=false,lr=0.01 and drop_last=false,lr=0.1 (batch_size=16) "
        "gave identical predictions"
    )
    assert identical_message(group[:2][::-1]).startswith("cells drop_last=false and drop_last=true (")
    assert "(" not in identical_message([{"lr": 0.01}, {"lr": 0.1}])


# --- progress with varied epochs ----------------------------------------------------------------


class CountingDisplay:
    """A progress display of one's own: per run (cell), the epochs it expected and those trained."""

    def __init__(self, epochs):
        self.epochs = epochs
        self.runs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def start(self, total, done):
        self.runs.append(dict(expected=(total - done) * self.epochs, trained=0))

    def job_started(self, job):
        pass

    def epoch_done(self, job, record):
        self.runs[-1]["trained"] += 1

    def job_done(self, job):
        pass


def test_each_cell_shows_its_own_epochs_when_the_grid_varies_them(tiny, tmp_path):
    display = CountingDisplay(epochs=5)  # the base recipe's epochs, as the command line sets them
    cvkit.evaluate(
        [], vary={"epochs": [1, 2]}, out=tmp_path / "g", data=tiny, folds=2, repeats=1, progress=display
    )
    assert display.runs == [dict(expected=2, trained=2), dict(expected=4, trained=4)]


# --- the recipe x model test: Hotelling's overlap-corrected T^2 (issue 20) -----------------------


def _hotelling_by_hand(cells):
    """The test from its definition, with another contrast basis (cell c - cell 0, not orthonormal):
    T^2 is invariant to it, so an error in the module's contrasts or scaling shows."""
    from scipy import stats

    d = np.stack([c.split_differences() for c in cells])
    y = d[1:] - d[0]
    p, n_splits = y.shape
    covariance = (1 / n_splits + cells[0].n_test / cells[0].n_train) * np.atleast_2d(np.cov(y))
    t2 = y.mean(axis=1) @ np.linalg.solve(covariance, y.mean(axis=1))
    return stats.f.sf((n_splits - p) / (p * (n_splits - 1)) * t2, p, n_splits - p)


def test_the_recipe_x_model_test_is_the_overlap_corrected_hotelling_t2():
    rng = np.random.default_rng(11)
    for effects, structure in (([0.03, 0, 0, 0], "unequal"), ([0, 0.01, 0.02, 0.03], "unstable")):
        cells = synthetic_grid(rng, effects, structure=structure)
        h = recipe_heterogeneity(cells)
        assert h.method == "hotelling" and h.df == (3.0, 12.0)
        assert h.pvalue == pytest.approx(_hotelling_by_hand(cells), rel=1e-9)
    # Two cells: the corrected resampled t on the difference between the cells' differences.
    from cvkit.stats import difference_test

    a, b = synthetic_grid(rng, [0.03, 0.0])
    between = PairedJobScores(a.repeat, a.fold, a.seed, b.diffs, a.diffs, n_train=a.n_train, n_test=a.n_test)
    assert recipe_heterogeneity([a, b]).pvalue == pytest.approx(difference_test(between, "corrected_t").p)


def test_cells_in_lockstep_are_equal_or_certainly_different():
    cells = synthetic_grid(np.random.default_rng(12), [0.0, 0.0])
    assert recipe_heterogeneity([cells[0]] * 4).pvalue == 1.0
    c = cells[0]
    shifted = PairedJobScores(c.repeat, c.fold, c.seed, c.baseline, c.variant + 0.01, n_train=120, n_test=30)
    assert recipe_heterogeneity([c, shifted]).pvalue == 0.0  # the same noise, 0.01 apart: no doubt


def test_many_cells_on_few_splits_fall_back_to_the_max_deviation_test():
    cells = synthetic_grid(np.random.default_rng(13), [0.0] * 4, repeats=1)  # J - p = 2 < p = 3
    h = recipe_heterogeneity(cells)
    assert h.method == "max_deviation" and h.pvalue == pytest.approx(min(1.0, 4 * min(h.pvalues)))


@pytest.mark.parametrize("structure", ["unequal", "unstable", "repeat"])
def test_the_recipe_x_model_test_keeps_its_level_under_every_noise_structure(structure):
    n = 400
    for effects in ([0.0] * 4, [0.0, 0.0]):
        rates = bench.heterogeneity_rates(effects, n, seed=14, structure=structure)
        assert rates["new"] <= binomial_ceiling(0.05, n), (structure, effects, rates)


def test_the_recipe_x_model_test_outpowers_the_max_deviation_test_where_it_was_weak():
    # Unequal noise across recipes (the max-deviation test's t of the advantaged cell carries the
    # noisy cells' variance) and two cells (it doubled one p-value): the new test finds more,
    # by more than twice the binomial se of a difference of the two rates.
    n = 400
    for effects, structure in (([0.03, 0, 0, 0], "unequal"), ([0.03, 0.0], "dataset")):
        rates = bench.heterogeneity_rates(effects, n, seed=15, structure=structure)
        assert rates["new"] - rates["old"] > 2 * np.sqrt(0.5 / n), (structure, rates)


# --- the across-recipe analysis with real learners (benchmarks/calibration_recipes.py) ----------


_real_spec = importlib.util.spec_from_file_location(
    "calibration_recipes_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "calibration_recipes.py"
)
real = importlib.util.module_from_spec(_real_spec)
sys.modules[_real_spec.name] = real  # its dataclasses look their module up there
_real_spec.loader.exec_module(real)


def test_the_real_learner_recipe_check_runs_cvkits_analysis_and_reports_each_claim(tmp_path):
    out = tmp_path / "recipes.md"
    summary = real.main(["--reduced", "--out", str(out)])
    text = out.read_text(encoding="utf-8")
    n = real.REDUCED.n_datasets
    assert "## Across-recipe analysis (--vary) with real learners" in text
    assert all(f"| {case} |" in text for case in real.CASES)
    nowhere = summary["tallies"]["advantage nowhere"]
    assert len(nowhere) == n and {t["method"] for t in nowhere} == {"hotelling"}
    # Advantage nowhere: "robust" needs all four cells better by chance (about 0.05^4 per data set);
    # 4 of 12 false claims of any kind has probability < 0.3% at a 5% rate.
    assert sum(t["robust"] for t in nowhere) == 0
    for key in ("false_cell_better", "overall_better", "heterogeneity", "depends"):
        assert sum(t[key] for t in nowhere) <= 3, key


def test_the_real_learner_grid_has_its_advantage_in_one_cell_only():
    # The bench's known truth: under (b) the advantaged cell's difference is positive and the twin
    # cells' differences are not (12 data sets: the se of a mean over them is about 0.004).
    from cvkit.stats import difference_test

    estimates = []
    for index in range(12):
        result = real.run_dataset(real.REDUCED, index)
        estimates.append([difference_test(j).estimate for j in real.case_jobs(result, real.CASES[1])])
    means = np.mean(estimates, axis=0)
    advantaged = real.CELLS.index(real.ADVANTAGED)
    assert means[advantaged] > 0.01
    assert all(abs(m) < 0.012 for i, m in enumerate(means) if i != advantaged), means


def test_calibration_recipes_flag_appends_the_section(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "calibration_bench_hook", Path(__file__).resolve().parents[1] / "benchmarks" / "calibration.py"
    )
    calibration = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = calibration  # its dataclasses look their module up there
    spec.loader.exec_module(calibration)
    out = tmp_path / "table.md"
    out.write_text("# Calibration bench\n", encoding="utf-8")
    monkeypatch.setattr(calibration, "run", lambda config, on_regime=None: ({}, {}, {}))  # no regimes
    calibration.main(["--out", str(out), "--recipes", "2", "--regimes", "converged"])
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Calibration bench\n") and "2 data sets of n = 428 per case" in text


def test_the_grid_average_carries_a_bound_on_the_test_sample_variance():
    # Cauchy-Schwarz: the test-sample sd of a mean of differences is at most the mean of their sds;
    # with it the grid average is tested by the verdict's default method, like a cell (the
    # corrected t on averaged scores rejected 12.0% of 400 A = B real-learner grids, this 7.0%).
    from cvkit.stats import DEFAULT_VERDICT_METHOD, grid_average

    a, b = synthetic_grid(np.random.default_rng(16), [0.0, 0.0])
    with_variances = [
        PairedJobScores(c.repeat, c.fold, c.seed, c.baseline, c.variant, 120, 30, np.full(15, v))
        for c, v in ((a, 0.0004), (b, 0.0016))
    ]
    average = grid_average(with_variances)
    assert average.diff_variance == pytest.approx(np.full(15, 0.03**2))  # ((0.02 + 0.04) / 2)^2
    report = analyse_cells(recipe_cells({"drop_last": [True, False]}), {"v": with_variances},
                           vary={"drop_last": [True, False]}, baseline="b")  # fmt: skip
    assert report.variants[0].overall.ttest.method == DEFAULT_VERDICT_METHOD
    assert grid_average([a, b]).diff_variance is None  # no variances: the corrected t, as before


def test_a_grid_shows_each_warning_once_and_every_cell_keeps_it(tmp_path, monkeypatch):
    # Every cell loads the same data: its warnings would repeat cell after cell. Shown once; each
    # cell's run still records all of them among its caveats.
    import warnings

    from cvkit.api import record_warnings
    from cvkit.multiverse import evaluate_grid

    shown, kept = [], []

    def one_cell(variants, *, recipe, out, registration, progress, **kwargs):
        with record_warnings() as caught:
            warnings.warn("12 duplicate image pairs", UserWarning, stacklevel=1)
            warnings.warn(f"batch size {recipe.batch_size}", UserWarning, stacklevel=1)
        kept.append(caught)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        monkeypatch.setattr(warnings, "showwarning", lambda message, *args, **kw: shown.append(str(message)))
        evaluate_grid([], vary={"batch_size": [16, 32]}, out=tmp_path, evaluate=one_cell)
    assert shown == ["12 duplicate image pairs", "batch size 16", "batch size 32"]
    duplicates = "12 duplicate image pairs"
    assert kept == [[duplicates, "batch size 16"], [duplicates, "batch size 32"]]
