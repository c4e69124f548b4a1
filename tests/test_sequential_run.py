"""`cvkit evaluate --until-decided`: repeats in stages, a look after each, a stop when every
variant is decided; the reports say where and why it stopped."""

import json

import pytest

import cvkit
from cvkit.cli import main
from cvkit.data import make_demo
from cvkit.errors import ConfigError
from cvkit.planning import SequentialRule

CONSTANT = """
from sklearn.dummy import DummyClassifier


def build_estimator(context):
    # the class prior for every image: AUC 0.5, far below the baseline's
    return DummyClassifier(strategy="prior")
"""

SAME_AS_BASELINE = """
from sklearn.linear_model import LogisticRegression


def build_estimator(context):
    # what the built-in logreg baseline fits, under another name: an A/A comparison
    return LogisticRegression(max_iter=1000)
"""


@pytest.fixture(scope="module")
def data():
    return make_demo(120, image_size=16, seed=4)


def _run(data, plugin, out, max_repeats=6):
    return cvkit.evaluate(
        [str(plugin)], data=data, baseline="logreg", folds=3, repeats=max_repeats, out=out, progress=False,
        until_decided=SequentialRule(max_repeats=max_repeats),
    )  # fmt: skip


def test_a_clearly_worse_variant_stops_at_the_first_look(data, write_plugin, tmp_path):
    results = _run(data, write_plugin("constant", CONSTANT), tmp_path / "run")
    record = results.sequential
    looks = record["looks"]["constant"]
    assert record["decided"] and record["repeats_run"] == 2 and len(looks) == 1
    assert looks[0]["decision"] == "worse" and abs(looks[0]["z"]) >= looks[0]["boundary"]
    # only the first two repeats were trained
    assert {job["repeat"] for job in results.jobs} == {0, 1}
    report = cvkit.compare(results)
    (c,) = report.comparisons
    assert c.verdict == "worse" and "Sequential design: stopped after 2 of at most 6 repeats" in c.paragraph
    assert c.sequential[-1].high < 0  # its repeated interval excludes 0


def test_an_a_a_comparison_never_claims_a_difference(data, write_plugin, tmp_path):
    results = _run(data, write_plugin("twin", SAME_AS_BASELINE), tmp_path / "run")
    looks = results.sequential["looks"]["twin"]
    assert looks[-1]["decision"] in ("equivalent", "futile", "inconclusive")
    assert cvkit.compare(results).comparisons[0].verdict in ("equivalent", "inconclusive")


def test_reports_say_where_it_stopped_and_a_rerun_resumes_the_same_looks(data, write_plugin, tmp_path):
    plugin = write_plugin("constant", CONSTANT)
    out = tmp_path / "run"
    first = _run(data, plugin, out)
    again = _run(data, plugin, out)
    assert again.counts.trained == 0 and again.sequential == first.sequential
    json_path = tmp_path / "summary.json"
    assert main(["report", str(out), "--json", str(json_path)]) == 0
    for name in ("report.html", "report.md"):
        assert "Sequential design: stopped after 2 of at most 6 repeats" in (out / name).read_text(), name
    record = json.loads(json_path.read_text())["comparison"]["comparisons"]["constant"]
    assert record["verdict"] == "worse" and record["sequential"][-1]["decision"] == "worse"


def test_a_fixed_run_folder_is_not_continued_as_a_sequential_one(data, write_plugin, tmp_path):
    plugin = write_plugin("constant", CONSTANT)
    out = tmp_path / "run"
    cvkit.evaluate([str(plugin)], data=data, baseline="logreg", folds=3, repeats=6, out=out, progress=False)
    with pytest.raises(ConfigError, match="holds a run with other settings"):
        _run(data, plugin, out)


def test_the_rule_and_the_flags_refuse_what_they_cannot_do(capsys):
    with pytest.raises(ConfigError, match="max_repeats must be at least 2"):
        SequentialRule(max_repeats=1)
    assert main(["evaluate", "--max-repeats", "4", "--epochs", "1"]) == 2
    assert "--max-repeats applies to --until-decided only" in capsys.readouterr().err
    assert main(["evaluate", "--until-decided", "--repeats", "4", "--epochs", "1"]) == 2
    assert "--max-repeats, not --repeats" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="pass repeats=4"):
        cvkit.evaluate(["logreg"], repeats=3, until_decided=SequentialRule(max_repeats=4), progress=False)
