"""The clinical layer (issue 19): calibration against statsmodels and against scorers of known
calibration, net benefit by hand, operating points chosen on validation predictions only."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from scipy.special import expit

import cvkit
from cvkit import stats
from cvkit.clinical import clinical_analysis, operating_point_scores, parse_thresholds
from cvkit.comparison import compare
from cvkit.errors import ConfigError
from cvkit.results import Results

FAST = dict(folds=3, repeats=2, epochs=2)


# -- calibration ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_calibration_intercept_and_slope_match_statsmodels(seed):
    import statsmodels.api as sm

    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, 200)
    y = rng.random(200) < expit(0.4 + 0.6 * z)
    p = expit(z)
    scores = stats.calibration_scores(y, p)
    offset_fit = sm.GLM(y.astype(float), np.ones((200, 1)), family=sm.families.Binomial(), offset=z).fit()
    slope_fit = sm.GLM(y.astype(float), sm.add_constant(z), family=sm.families.Binomial()).fit()
    assert scores["cal_intercept"] == pytest.approx(offset_fit.params[0], abs=1e-8)
    assert scores["cal_slope"] == pytest.approx(slope_fit.params[1], abs=1e-8)
    assert scores["brier"] == pytest.approx(np.mean((p - y) ** 2))


def test_expected_calibration_error_by_hand():
    # bins [0.1, 0.2): 0.15, 0.15 with one positive -> |0.15 - 0.5| x 2/5; [0.8, 0.9): 0.85 x 3, all
    # positive -> |0.85 - 1| x 3/5.
    p = np.array([0.15, 0.15, 0.85, 0.85, 0.85])
    y = np.array([1, 0, 1, 1, 1], dtype=bool)
    assert stats.calibration_scores(y, p)["ece"] == pytest.approx(0.35 * 2 / 5 + 0.15 * 3 / 5)


def test_calibration_of_a_fold_with_one_class_is_nan_not_an_error():
    scores = stats.calibration_scores(np.ones(10, dtype=bool), np.linspace(0.1, 0.9, 10))
    assert np.isnan(scores["cal_slope"]) and np.isnan(scores["cal_intercept"])


def _cv_calibration_intervals(rng, *, n=300, folds=5, repeats=2, stretch=1.0):
    """One simulated data set scored by a fixed scorer whose logit is ``stretch`` times the true
    one, cross-validated as cvkit does: per test fold the calibration intercept and slope, then
    the corrected t interval over the folds (the machinery of ``cvkit.clinical``)."""
    z = rng.normal(0, 1.5, n)
    y = rng.random(n) < expit(z)
    p = expit(stretch * z)
    per_fold = {"cal_intercept": [], "cal_slope": []}
    for _ in range(repeats):
        order = rng.permutation(n)
        for test in np.array_split(order, folds):
            scores = stats.calibration_scores(y[test], p[test])
            for key in per_fold:
                per_fold[key].append(scores[key])
    n_test = n / folds
    return {key: stats.corrected_ttest(np.array(v), n - n_test, n_test) for key, v in per_fold.items()}


def test_a_perfectly_calibrated_scorer_has_slope_1_and_intercept_0_inside_their_intervals():
    rng = np.random.default_rng(19)
    runs = [_cv_calibration_intervals(rng) for _ in range(200)]
    slope_covered = np.mean([r["cal_slope"].low <= 1 <= r["cal_slope"].high for r in runs])
    intercept_covered = np.mean([r["cal_intercept"].low <= 0 <= r["cal_intercept"].high for r in runs])
    print(f"coverage over 200 simulations: slope {slope_covered:.3f}, intercept {intercept_covered:.3f}")
    # The corrected t is conservative for a fixed scorer (repeats share samples), and the ML slope
    # is biased away from 0 on small folds: coverage at or above nominal is what it should give.
    assert slope_covered >= 0.93
    assert intercept_covered >= 0.93


def test_an_overconfident_scorer_is_flagged():
    rng = np.random.default_rng(20)
    runs = [_cv_calibration_intervals(rng, stretch=2.0) for _ in range(50)]
    slopes = np.array([r["cal_slope"].mean for r in runs])
    below = np.mean([r["cal_slope"].high < 1 for r in runs])
    assert np.median(slopes) == pytest.approx(0.5, abs=0.1)
    assert below >= 0.95


# -- net benefit ------------------------------------------------------------------------------


def test_net_benefit_matches_a_hand_computation():
    y = np.array([1, 1, 0, 0, 1], dtype=bool)
    s = np.array([0.9, 0.4, 0.35, 0.1, 0.2])
    # t = 0.3: treated 0.9, 0.4, 0.35 -> TP 2, FP 1 of 5: 2/5 - 1/5 x 0.3/0.7
    # t = 0.5: treated 0.9 -> TP 1: 1/5
    # t = 0.05: all treated -> TP 3, FP 2: 3/5 - 2/5 x 0.05/0.95
    nb = stats.net_benefit(y, s, [0.05, 0.3, 0.5])
    assert nb == pytest.approx([3 / 5 - 2 / 5 * 0.05 / 0.95, 2 / 5 - 1 / 5 * 0.3 / 0.7, 1 / 5])
    all_ = stats.treat_all_net_benefit(y, [0.05, 0.3, 0.5])
    assert all_ == pytest.approx([0.6 - 0.4 * 0.05 / 0.95, 0.6 - 0.4 * 0.3 / 0.7, 0.6 - 0.4])
    assert nb[0] == pytest.approx(all_[0])  # everyone treated at 0.05: the two curves meet


def test_nb_thresholds_are_checked():
    assert parse_thresholds("0.3, 0.1,0.2") == (0.1, 0.2, 0.3)
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        parse_thresholds("0.1,1.5")
    with pytest.raises(ConfigError, match="--nb-thresholds"):
        parse_thresholds("a,b")


# -- operating points -------------------------------------------------------------------------


def test_operating_point_rules_are_parsed_or_refused_with_the_accepted_forms():
    assert stats.parse_operating_point("sens@spec=0.90") == stats.OperatingRule("sens@spec", 0.9)
    assert stats.parse_operating_point("youden").text == "youden"
    assert stats.parse_operating_point("fixed=0.5").text == "fixed=0.5"
    for bad in ("sens@spec", "best", "youden=0.5"):
        with pytest.raises(ValueError, match="sens@spec=0.90, spec@sens=0.90, youden or fixed=0.5"):
            stats.parse_operating_point(bad)
    with pytest.raises(ValueError, match="strictly between"):
        stats.parse_operating_point("spec@sens=1.5")


def test_thresholds_by_hand_and_youden_against_sklearn():
    from sklearn.metrics import roc_curve

    y = np.array([0, 0, 0, 0, 1, 0, 1, 1, 1, 1], dtype=bool)
    s = np.array([0.05, 0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.8, 0.9])
    # specificity >= 0.8 needs at most one of 5 negatives called: threshold 0.35 (calls 0.4) gives
    # sensitivity 5/5 -> the highest sensitivity at that specificity.
    t = stats.choose_threshold(stats.OperatingRule("sens@spec", 0.8), y, s)
    assert t == 0.35
    assert stats.operating_scores(y, s, t) == dict(sensitivity=1.0, specificity=0.8, ppv=5 / 6, npv=1.0)
    # sensitivity >= 0.8 (4 of 5 positives): threshold 0.6 gives specificity 1.
    assert stats.choose_threshold(stats.OperatingRule("spec@sens", 0.8), y, s) == 0.6
    fpr, tpr, cut = roc_curve(y, s)
    best = np.max(tpr - fpr)
    t = stats.choose_threshold(stats.OperatingRule("youden"), y, s)
    scores = stats.operating_scores(y, s, t)
    assert scores["sensitivity"] + scores["specificity"] - 1 == pytest.approx(best)
    assert stats.choose_threshold(stats.OperatingRule("fixed", 0.5), y, s) == 0.5


@pytest.mark.parametrize("rule", ["sens@spec=0.9", "spec@sens=0.85", "youden"])
def test_perturbing_test_fold_predictions_never_changes_the_threshold(rule):
    rng = np.random.default_rng(3)
    rule = stats.parse_operating_point(rule)
    val_y, val_s = rng.random(80) < 0.4, rng.random(80)
    test_y, test_s = rng.random(60) < 0.4, rng.random(60)
    threshold, _ = operating_point_scores(rule, val_y, val_s, test_y, test_s)
    assert threshold == stats.choose_threshold(rule, val_y, val_s)
    for _ in range(20):
        other_y, other_s = rng.random(60) < rng.random(), rng.random(60)
        assert operating_point_scores(rule, val_y, val_s, other_y, other_s)[0] == threshold


# -- on a run ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("clinical") / "run"
    return cvkit.evaluate(["logreg"], data=tiny, out=out, **FAST)


def test_every_job_keeps_its_validation_predictions(run):
    val = run.rule_predictions(cvkit.runner.VALIDATION_RULE)
    for split in run.plan:
        rows = val[(val.repeat == split["repeat"]) & (val.fold == split["fold"])]
        for _, job in rows.groupby(["model", "seed_index"]):
            assert sorted(job.sample_idx) == sorted(split["val"])  # the inner validation part, no test sample
            assert not set(job.sample_idx) & set(split["test"])


def test_the_threshold_is_a_function_of_validation_predictions_only(run, tmp_path):
    import shutil

    report = clinical_analysis(run, operating_point="sens@spec=0.80")
    copy = tmp_path / "copy"
    shutil.copytree(run.run_dir, copy)
    rng = np.random.default_rng(0)
    with sqlite3.connect(copy / cvkit.runner.STORE_NAME) as db:  # scramble every test-fold prediction
        rows = db.execute(
            "SELECT job_key, rule, sample_idx, probs FROM predictions WHERE rule != ?", ("validation",)
        )
        for key, rule, sample, probs in rows.fetchall():
            p = rng.dirichlet(np.ones(len(json.loads(probs))))
            db.execute(
                "UPDATE predictions SET probs = ? WHERE job_key = ? AND rule = ? AND sample_idx = ?",
                (json.dumps(p.tolist()), key, rule, sample),
            )
    again = clinical_analysis(Results(copy), operating_point="sens@spec=0.80")
    assert again.thresholds == report.thresholds
    assert again.operating.per_model != report.operating.per_model  # the test folds did change


def test_a_store_without_validation_predictions_says_so_in_one_line(run, tmp_path):
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(run.run_dir, copy)
    with sqlite3.connect(copy / cvkit.runner.STORE_NAME) as db:
        db.execute("DELETE FROM predictions WHERE rule = 'validation'")
    report = compare(Results(copy))
    assert report.clinical.operating is None
    (note,) = report.clinical.notes
    assert "no validation predictions" in note and "\n" not in note
    assert report.clinical.calibration.per_model  # the rest is still there


def test_clinical_layer_of_a_run(run):
    report = compare(run, nb_thresholds="0.15,0.25", operating_point="youden")
    c = report.clinical
    assert c.nb_thresholds == (0.15, 0.25)
    assert set(c.calibration.per_model) == {"resnet18", "logreg"}
    assert set(c.calibration.differences) == {"logreg"}
    # the paired difference is the mean of per-fold differences, seeds averaged
    m = c.net_benefit.per_model
    diff = c.net_benefit.differences["logreg"]["nb@0.15"]
    assert diff.mean == pytest.approx(m["logreg"]["nb@0.15"][0] - m["resnet18"]["nb@0.15"][0])
    # the decision curve at a declared threshold is that threshold's mean net benefit
    i = int(np.argmin(np.abs(c.decision.thresholds - 0.25)))
    assert c.decision.mean["logreg"][i] == pytest.approx(m["logreg"]["nb@0.25"][0])
    assert c.operating_rule == "youden" and set(c.thresholds) == {"resnet18", "logreg"}
    assert c.weighting_note is not None and "class weights" in c.weighting_note  # the default recipe


# -- reports ----------------------------------------------------------------------------------


def test_the_clinical_tables_fit_80_columns_in_the_terminal(run):
    import io

    from rich.console import Console

    from cvkit.report import render_comparison

    buffer = io.StringIO()
    report = compare(run)
    render_comparison(report, Console(file=buffer, width=80, emoji=False))
    assert "Calibration of the predicted" not in buffer.getvalue()  # only with --details
    render_comparison(report, Console(file=buffer, width=80, emoji=False), details=True)
    out = buffer.getvalue()
    for heading in (
        "Calibration of the predicted probability of",
        "Net benefit at the pre-declared",
        "Operating point",
    ):
        assert heading in out
    assert "Estimand:" in out and "class weights in the loss" in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_html_markdown_and_json_hold_the_clinical_section(run, tmp_path):
    from cvkit.report import report_record, write_reports

    report = compare(run)
    written = write_reports(run, report, ["html", "md"], out_dir=tmp_path)
    html = written["html"].read_text(encoding="utf-8")
    markdown = written["md"].read_text(encoding="utf-8")
    assert '<section id="clinical">' in html and 'id="clinical-operating-point"' in html
    assert "## Clinical view" in markdown and "### Net benefit at the pre-declared thresholds" in markdown
    assert "figures/decision_curve.png" in markdown and (tmp_path / "figures" / "decision_curve.png").exists()
    record = json.loads(json.dumps(report_record(report), allow_nan=False))  # NaN written as null
    clinical = record["clinical"]
    assert clinical["nb_thresholds"] == [0.1, 0.2, 0.3] and clinical["operating_rule"] == "sens@spec=0.9"
    slope = clinical["calibration"]["per_model"]["logreg"]["cal_slope"]
    assert slope["mean"] == pytest.approx(report.clinical.calibration.per_model["logreg"]["cal_slope"][0])
    assert set(clinical["decision_curve"]["models"]) == {"resnet18", "logreg"}


def test_report_command_prints_the_clinical_tables_with_details(run, capsys, tmp_path):
    from cvkit.cli import main

    code = main(
        [
            "report",
            str(run.run_dir),
            "--md",
            "--details",
            "--operating-point",
            "youden",
            "--nb-thresholds",
            "0.15",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "Operating point youden" in out and "NB at 0.15" in out
    assert "NB at 0.15" in (run.run_dir / "report.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "option, value, said",
    [("--operating-point", "sens@0.9", "sens@spec=0.90"), ("--nb-thresholds", "0.2,1", "strictly between")],
)
def test_bad_clinical_options_are_refused_before_a_store_exists(
    tiny_npz, tmp_path, capsys, option, value, said
):
    from cvkit.cli import main

    out = tmp_path / "run"
    code = main(
        [
            "evaluate",
            "--data",
            str(tiny_npz),
            "--folds",
            "2",
            "--epochs",
            "1",
            "--out",
            str(out),
            option,
            value,
        ]
    )
    assert code == 2 and not out.exists()
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert said in line


# -- three or more classes --------------------------------------------------------------------


def test_per_class_scores_match_sklearn():
    from sklearn.metrics import recall_score, roc_auc_score

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, 90)
    probs = rng.dirichlet(np.ones(3), 90) + np.eye(3)[labels] * 0.3
    probs /= probs.sum(axis=1, keepdims=True)
    scores = stats.per_class_scores(labels, probs)
    assert np.nanmean(scores["auc"]) == pytest.approx(
        roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    )
    predicted = probs.argmax(axis=1)
    assert scores["sensitivity"] == pytest.approx(recall_score(labels, predicted, average=None))
    for c in range(3):  # specificity of c: recall of "not c" when c is the positive class
        assert scores["specificity"][c] == pytest.approx(recall_score(labels != c, predicted != c))


@pytest.fixture(scope="module")
def three_class_run(tiny, tmp_path_factory):
    from cvkit.data import Dataset

    labels = np.arange(len(tiny.labels)) % 3
    data = Dataset(tiny.images, labels, ("a", "b", "<c>[red]"), 2, tiny.sample_ids, name="three")
    out = tmp_path_factory.mktemp("three") / "run"
    return cvkit.evaluate(["logreg"], data=data, out=out, folds=3, repeats=1, epochs=1)


def test_three_classes_get_per_class_tables_named_one_vs_rest_and_macro(three_class_run, tmp_path):
    from cvkit.report import draw_figures, write_reports

    report = compare(three_class_run)
    per_class = report.clinical.per_class
    assert set(per_class) == {"auc", "sensitivity", "specificity"}
    table = per_class["auc"]
    assert [table.labels[m] for m in table.metrics] == ["a", "b", "<c>[red]", "macro average"]
    # the macro average is the mean over classes of the per-fold one-vs-rest AUC
    p = three_class_run.predictions
    rows = p[p.model == "logreg"]
    per_fold = []
    for _, job in rows.groupby(["repeat", "fold"]):
        probs = job[[f"prob_{c}" for c in ("a", "b", "<c>[red]")]].to_numpy()
        per_fold.append(np.nanmean(stats.per_class_scores(job["label_index"].to_numpy(), probs)["auc"]))
    assert table.per_model["logreg"]["auc:macro"][0] == pytest.approx(np.mean(per_fold))
    figures = draw_figures(three_class_run, report)
    assert "per_class" in figures and "one-vs-rest" in figures["per_class"][0]
    written = write_reports(three_class_run, report, ["html", "md"], out_dir=tmp_path)
    md = written["md"].read_text(encoding="utf-8")
    assert "of each class against the rest (one-vs-rest), and their macro average" in md
    assert "<c>" not in written["html"].read_text(encoding="utf-8").split('<section id="clinical">')[1]
    import io

    from rich.console import Console

    from cvkit.report import render_comparison

    buffer = io.StringIO()
    render_comparison(report, Console(file=buffer, width=80, emoji=False), details=True)
    out = buffer.getvalue()
    assert "<c>[red]" in out and out.count("Estimand: per test fold, each class against") == 1
    assert max(len(line) for line in out.splitlines()) <= 80


# -- reporting checklist ----------------------------------------------------------------------


def test_the_checklist_answers_from_the_run_and_lists_the_rest_for_the_authors(run, tmp_path):
    from cvkit.report import write_reports

    report = compare(run)
    written = write_reports(run, report, ["html", "md"], out_dir=tmp_path)
    md = written["md"].read_text(encoding="utf-8")
    section = md[md.index("## Reporting checklist (TRIPOD+AI, CLAIM)") : md.index("## Glossary")]
    fingerprint = run.run["data"]["fingerprint"][:16]
    assert f"content fingerprint {fingerprint}" in section
    assert "positive class malignant (set by the Python call" in section  # evaluate() here, no command
    assert "3-fold cross-validation x 2 repeats x 1 training seed per split" in section
    for model in run.models:
        assert f"{model['name']} source hash {model['digest'][:16]}" in section
    assert "torch " in section and "seed robustness not measured" in section
    assert "sens@spec=0.9, chosen on each job's validation predictions" in section
    authors = section[section.index("For the authors") :]
    assert "**Reference standard**" in authors and "**External validation**" in authors
    html = written["html"].read_text(encoding="utf-8")
    assert '<section id="checklist">' in html and f"content fingerprint {fingerprint}" in html


# -- recalibration on validation predictions --------------------------------------------------


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_recalibration_fitted_on_validation_repairs_an_overconfident_scorer(method):
    rng = np.random.default_rng(7)
    before, after = [], []
    for _ in range(40):
        z_val, z_test = rng.normal(0, 1.5, 300), rng.normal(0, 1.5, 300)
        y_val, y_test = rng.random(300) < expit(z_val), rng.random(300) < expit(z_test)
        fitted = stats.fit_recalibration(method, y_val, expit(2 * z_val))  # overconfident: logit x 2
        before.append(stats.calibration_scores(y_test, expit(2 * z_test)))
        after.append(stats.calibration_scores(y_test, fitted(expit(2 * z_test))))
    assert np.median([b["cal_slope"] for b in before]) == pytest.approx(0.5, abs=0.1)  # clearly below 1
    if method == "platt":  # a logistic map on the logit: the slope comes back to about 1
        assert np.median([a["cal_slope"] for a in after]) == pytest.approx(1.0, abs=0.1)
    # a step function has no logit slope to speak of; its errors shrink
    assert np.median([a["ece"] for a in after]) < 0.6 * np.median([b["ece"] for b in before])
    assert np.median([a["brier"] for a in after]) < np.median([b["brier"] for b in before])


def test_recalibration_needs_both_classes_and_a_known_method():
    assert stats.fit_recalibration("platt", np.zeros(5, dtype=bool), np.linspace(0.1, 0.9, 5)) is None
    assert stats.fit_recalibration("none", np.array([0, 1], dtype=bool), np.array([0.2, 0.8])) is None
    with pytest.raises(ValueError, match="--calibrate 'beta'"):
        stats.fit_recalibration("beta", np.array([0, 1]), np.array([0.2, 0.8]))


def test_calibrate_platt_on_a_run_changes_calibration_not_auc(run, tmp_path):
    own, platt = compare(run), compare(run, calibrate="platt")
    assert platt.clinical.recalibrated == "platt" and own.clinical.recalibrated is None
    assert platt.clinical.calibration.per_model != own.clinical.calibration.per_model
    assert [c.ttest.mean for c in platt.comparisons] == [c.ttest.mean for c in own.comparisons]
    from cvkit.report import write_reports

    md = write_reports(run, platt, ["md"], out_dir=tmp_path)["md"].read_text(encoding="utf-8")
    assert "Probabilities recalibrated (platt) by a map fitted on each job's validation predictions" in md
    with pytest.raises(ConfigError, match="--calibrate 'beta'"):
        compare(run, calibrate="beta")
