import json

import numpy as np
import pytest
from scipy import stats as sps

import cvkit
from cvkit import stats
from cvkit.cli import main
from cvkit.comparison import VERDICTS
from cvkit.errors import ConfigError
from cvkit.report import report_record

FAST = dict(folds=3, repeats=2, epochs=2)


@pytest.fixture(scope="module")
def two_variants(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "run"
    return cvkit.evaluate(["plugins/fc_attention.py", "logreg"], data=tiny, out=out, **FAST)


def _job_scores_by_hand(results, baseline, variant):
    """The verdict's input rebuilt from the store's predictions alone: per job (repeat, fold,
    seed) both models' AUC and DeLong's variance of their difference on that job's test fold."""
    p = results.predictions
    column = f"prob_{results.positive_name}"
    keys, a, b, variances = [], [], [], []
    for key, job in p[p.model.isin([baseline, variant])].groupby(["repeat", "fold", "seed_index"]):
        x, y = (job[job.model == m].sort_values("sample_idx") for m in (baseline, variant))
        positive = results.labels[x["sample_idx"].to_numpy()] == results.positive
        keys.append(key)
        a.append(
            stats.classification_metrics(
                results.labels[x["sample_idx"]], x.filter(like="prob_").to_numpy(), results.positive
            )["auc"]
        )
        b.append(
            stats.classification_metrics(
                results.labels[y["sample_idx"]], y.filter(like="prob_").to_numpy(), results.positive
            )["auc"]
        )
        variances.append(stats.delong(positive, x[column].to_numpy(), y[column].to_numpy()).se ** 2)
    keys = np.array(keys)
    return stats.PairedJobScores(
        repeat=keys[:, 0], fold=keys[:, 1], seed=keys[:, 2], baseline=a, variant=b,
        n_train=results.fold_sizes[0], n_test=results.fold_sizes[1], diff_variance=variances,
    )  # fmt: skip


def test_compare_tests_each_variant_on_its_paired_jobs(two_variants):
    """The verdict is the sampling-within test (benchmarks/calibration.py's choice) of the paired
    per-job scores and their test-sample variances, rebuilt here from the predictions."""
    report = cvkit.compare(two_variants)
    assert [c.variant for c in report.comparisons] == ["fc_attention", "logreg"]
    for c in report.comparisons:
        diffs = two_variants.paired_differences(c.variant, "auc")
        assert np.allclose(c.diffs, diffs["difference"])
        jobs = _job_scores_by_hand(two_variants, two_variants.baseline, c.variant)
        reference = stats.difference_test(jobs, "sampling_within")
        assert c.ttest.method == "sampling_within" and reference.method == "sampling_within"
        assert c.ttest.pvalue == pytest.approx(reference.p) and c.ttest.mean == pytest.approx(
            reference.estimate
        )
        corrected = stats.corrected_ttest(diffs["difference"], *two_variants.fold_sizes)
        assert c.ttest.pvalue != pytest.approx(corrected.pvalue)  # really not the corrected t
        assert c.verdict in VERDICTS
        assert len(c.sample_tests) == 2  # one McNemar and DeLong per repeat
        assert c.bootstrap is not None and c.bootstrap.low <= c.bootstrap.estimate <= c.bootstrap.high
        assert c.paragraph.startswith(c.variant) and "sampling-within test" in c.paragraph
    holm = stats.holm([c.ttest.pvalue for c in report.comparisons])
    assert [c.pvalue_holm for c in report.comparisons] == pytest.approx(list(holm))
    assert report.aa is None and report.noise is None


def test_the_verdict_falls_back_to_the_corrected_t_and_says_so(two_variants):
    """F1 has no per-sample variance in the sampling test: the corrected t decides, and the
    report names it."""
    report = cvkit.compare(two_variants, metric="f1", n_resamples=200)
    for c in report.comparisons:
        diffs = two_variants.paired_differences(c.variant, "f1")["difference"]
        reference = stats.corrected_ttest(diffs, *two_variants.fold_sizes)
        assert c.ttest.method == "corrected_t" and c.ttest.pvalue == pytest.approx(reference.pvalue)
        assert "corrected resampled t" in c.paragraph
    assert report_record(report)["verdict_tests"] == "corrected resampled t"


def test_verdict_follows_the_rules():
    clear = np.full(15, 0.05) + np.linspace(-0.01, 0.01, 15)
    (v,) = stats.verdicts(_jobs(clear), alpha=0.05, rope=0.01)
    assert v.verdict == "better" and v.ttest.low > 0.01
    small = np.linspace(-0.001, 0.001, 15)
    (v0,) = stats.verdicts(_jobs(small), alpha=0.05, rope=0.01)
    assert v0.verdict == "equivalent"


def _jobs(*diffs_per_variant, n_train=80, n_test=20):
    """Per variant, its per-split differences as paired jobs (5 folds x repeats, one seed, no
    test-sample variances: the verdict's test is then the corrected t on these differences)."""
    out = []
    for diffs in diffs_per_variant:
        index = np.arange(len(diffs))
        out.append(
            stats.PairedJobScores(
                repeat=index // 5,
                fold=index % 5,
                seed=np.zeros_like(index),
                baseline=np.zeros(len(diffs)),
                variant=diffs,
                n_train=n_train,
                n_test=n_test,
            )
        )
    return out


def _diffs_with_pvalue(target, n_train=80, n_test=20, n=15):
    """15 per-fold differences whose corrected t has exactly the p-value ``target``."""
    from scipy.optimize import brentq

    z = np.random.default_rng(3).normal(size=n)
    z = (z - z.mean()) / z.std(ddof=1) * 0.05
    mu = brentq(lambda m: stats.corrected_ttest(m + z, n_train, n_test).pvalue - target, 0, 1)
    return mu + z


def test_interval_and_verdict_cannot_contradict():
    """Item 4: the printed interval is drawn at the level of the variant's Holm step and honours alpha."""
    # two variants at p 0.048 and 0.027: Holm 0.054 each, so neither interval may exclude 0
    pair = stats.verdicts(_jobs(_diffs_with_pvalue(0.048), _diffs_with_pvalue(0.027)), alpha=0.05, rope=0.01)
    assert [v.pvalue_holm for v in pair] == pytest.approx([0.054, 0.054])
    for v in pair:
        assert v.verdict == "inconclusive" and v.ttest.low < 0 < v.ttest.high
        assert v.confidence == pytest.approx(0.975)
    # --alpha 0.10 with p 0.087: significant, and the 90% interval says so
    (single,) = stats.verdicts(_jobs(_diffs_with_pvalue(0.087)), alpha=0.10, rope=0.01)
    assert (
        single.verdict == "better" and single.ttest.low > 0 and single.ttest.confidence == pytest.approx(0.90)
    )
    # three variants: 0.001 rejected at 0.05/3, 0.02 at 0.05/2, 0.04 at 0.05: all excluded
    three = stats.verdicts(_jobs(*(_diffs_with_pvalue(p) for p in (0.02, 0.001, 0.04))), alpha=0.05, rope=0.0)
    assert [v.confidence for v in three] == pytest.approx([1 - 0.05 / 2, 1 - 0.05 / 3, 0.95])
    assert all(v.verdict == "better" and v.ttest.low > 0 for v in three)
    # many random families: the interval excludes 0 exactly when the Holm-adjusted p is below alpha
    rng = np.random.default_rng(0)
    for _ in range(200):
        family = [0.03 * rng.normal() + 0.05 * rng.normal(size=15) for _ in range(rng.integers(1, 5))]
        alpha = rng.choice([0.05, 0.1, 0.2])
        for v in stats.verdicts(_jobs(*family), alpha=alpha, rope=0.0):
            assert v.significant == (v.pvalue_holm < alpha)


def test_compare_honours_alpha_in_the_printed_interval(two_variants):
    report = cvkit.compare(two_variants, alpha=0.2, n_resamples=200)
    smallest = min(report.comparisons, key=lambda c: c.ttest.pvalue)
    assert smallest.ttest.confidence == pytest.approx(0.9)  # 1 - 0.2/2: the first Holm step of two
    for c in report.comparisons:
        assert c.confidence == c.ttest.confidence
        assert (c.ttest.low > 0 or c.ttest.high < 0) == (c.pvalue_holm < 0.2)
        assert c.verdict.startswith(("better", "worse")) == (c.pvalue_holm < 0.2)


def test_significant_effect_inside_the_rope_is_better_but_negligible():
    """Item 5: Δ +0.004, CI [0.001, 0.007] inside ROPE ±0.01 does not read 'reliably beats'."""
    diffs = 0.004 + np.linspace(-1, 1, 15) * 0.0025
    (v,) = stats.verdicts(_jobs(diffs), alpha=0.05, rope=0.01)
    assert 0 < v.ttest.low and v.ttest.high < 0.01
    assert v.verdict == "better, but negligible"
    (w,) = stats.verdicts(_jobs(-diffs), alpha=0.05, rope=0.01)
    assert w.verdict == "worse, but negligible"
    # the smallest ROPE this design could confirm: equivalence needs the posterior's 95% inside it
    assert v.smallest_rope == pytest.approx(sps.t.ppf(0.975, 14) * v.ttest.se)
    zero = diffs - diffs.mean()
    inside = stats.bayes_correlated_ttest(zero, 0.2, rope=v.smallest_rope * 1.01).p_equivalent
    outside = stats.bayes_correlated_ttest(zero, 0.2, rope=v.smallest_rope * 0.99).p_equivalent
    assert inside >= 0.95 > outside


def test_rope_is_per_metric_and_overridable(two_variants):
    n_train, n_test = two_variants.fold_sizes
    positives = np.mean(
        [np.sum(two_variants.labels[s["test"]] == two_variants.positive) for s in two_variants.plan]
    )
    assert cvkit.compare(two_variants, n_resamples=200).rope == 0.01  # AUC
    sensitivity = cvkit.compare(two_variants, metric="sensitivity", n_resamples=200)
    assert sensitivity.rope == pytest.approx(1 / positives) and sensitivity.rope > 0.01
    assert all(c.bayes.rope == sensitivity.rope for c in sensitivity.comparisons)
    assert cvkit.compare(two_variants, metric="sensitivity", rope=0.05, n_resamples=200).rope == 0.05
    assert cvkit.compare(two_variants, metric="accuracy", n_resamples=200).rope == pytest.approx(
        max(0.01, 1 / n_test)
    )
    entry = report_record(cvkit.compare(two_variants, n_resamples=200))["comparisons"]["logreg"]
    assert entry["smallest_confirmable_rope"] > 0


def test_selection_rules_and_epoch_curves_are_stored(two_variants):
    assert {"val_auc", "val_loss", "val_acc", "last", "epoch:1", "epoch:2"} <= set(two_variants.rules)
    last = two_variants.rule_metrics("last")
    epoch2 = two_variants.rule_metrics("epoch:2")
    torch_models = last.model != "logreg"
    assert np.allclose(last[torch_models]["auc"].to_numpy(), epoch2["auc"].to_numpy())
    report = cvkit.compare(two_variants)
    assert [e["rule"] for e in report.selection] == ["val_auc", "val_loss", "val_acc", "last"]


def test_seeds_give_a_seed_noise_check_and_a_noise_floor(tiny, tmp_path):
    """The A/A check is the one-sample t of even vs odd seeds split by split (stats.seed_noise_check),
    not a corrected t (whose overlap correction left a check that could not fail)."""
    results = cvkit.evaluate([], data=tiny, out=tmp_path / "run", seeds=2, **FAST)
    report = cvkit.compare(results)
    assert report.comparisons == []
    m = results.metrics[results.metrics.model == results.baseline]
    reference = stats.seed_noise_check(m["repeat"], m["fold"], m["seed_index"], m["auc"])
    assert report.aa == reference and report.aa.n_splits == 6
    even_minus_odd = m.pivot_table(index=["repeat", "fold"], columns="seed_index", values="auc")
    assert report.aa.estimate == pytest.approx((even_minus_odd[0] - even_minus_odd[1]).mean())
    assert 0 < report.aa.power_one_sd < 1
    record = report_record(report)["aa_check"]
    assert record["verdict"] == ("differs" if report.aa.p < 0.05 else "no difference")
    assert f"{report.aa.power_one_sd:.0%}" in record["sentence"]
    assert report.noise.n_seeds == 2 and report.noise.seed_sd > 0


def test_design_advice_plans_for_the_stated_effect_never_the_observed_one(two_variants, capsys):
    """Item 3: the advice is for --min-effect (default the ROPE), projected from the run's variance
    components under the test that decided; the detectable effect is where that projection
    reaches 80% power."""
    report = cvkit.compare(two_variants, min_effect=0.05, n_resamples=200)
    for c in report.comparisons:
        model = stats.estimate_variance_model(
            _job_scores_by_hand(two_variants, two_variants.baseline, c.variant)
        )
        assert c.advice == stats.advise_design(model, 0.05, metric="AUC", method=c.ttest.method)
        assert "a difference of 0.05 AUC" in c.advice.sentence
        if np.isfinite(c.mde):
            power = stats.design_power(model, c.mde, n_folds=3, n_repeats=2, n_seeds=1, method=c.ttest.method)
            assert power == pytest.approx(0.8, abs=1e-3)
        if c.verdict == "inconclusive":
            assert c.advice.sentence in c.paragraph
    default = cvkit.compare(two_variants, n_resamples=200)
    assert {c.advice.min_effect for c in default.comparisons} == {default.rope}
    assert main(["compare", str(two_variants.run_dir), "--min-effect", "0"]) == 2
    assert "--min-effect must be a positive number, got 0.0" in capsys.readouterr().err


def test_compare_with_another_baseline_and_bad_options(two_variants):
    report = cvkit.compare(two_variants, baseline="logreg", metric="balanced_accuracy")
    assert report.baseline == "logreg" and {c.variant for c in report.comparisons} == {
        "resnet18",
        "fc_attention",
    }
    with pytest.raises(ConfigError, match="--baseline 'vgg' is not a model of this run"):
        cvkit.compare(two_variants, baseline="vgg")
    with pytest.raises(ConfigError, match="--metric 'brier'"):
        cvkit.compare(two_variants, metric="brier")  # lower is better: not a verdict metric


def test_cli_compare_json_has_stable_keys(two_variants, tmp_path, capsys):
    out = tmp_path / "c.json"
    assert main(["compare", str(two_variants.run_dir), "--json", str(out), "--rope", "0.02"]) == 0
    text = capsys.readouterr().out
    assert "Does the variant beat resnet18?" in text and "Calibration and caveats" in text
    comparison = json.loads(out.read_text())["comparison"]
    entry = comparison["comparisons"]["fc_attention"]
    assert set(entry) >= {
        "verdict",
        "paragraph",
        "verdict_test",
        "bayesian",
        "prob_outperform",
        "minimal_detectable_effect",
        "per_repeat",
        "bootstrap",
        "design_advice",
    }
    assert set(entry["verdict_test"]) == {
        "method",
        "statistic",
        "pvalue",
        "pvalue_holm",
        "df",
        "se",
        "ci_low",
        "ci_high",
        "confidence",
    }
    assert entry["bayesian"]["rope"] == 0.02
    assert main(["compare", str(two_variants.run_dir), "--baseline", "nope"]) == 2


def test_one_run_has_no_friedman_only_all_pairs_and_descriptive_ranks(two_variants, capsys):
    """Item 1: repeats of one data set are not Friedman blocks (55% false positives with three equal
    learners); one run gives every pair by the corrected t with Holm and mean ranks as a description."""
    report = cvkit.compare(two_variants, n_resamples=200)
    record = report_record(report)
    assert record["friedman"] is None
    pairs = {(p.model_a, p.model_b) for p in report.pairwise}
    assert pairs == {("resnet18", "fc_attention"), ("resnet18", "logreg"), ("fc_attention", "logreg")}
    raw = [p.ttest.pvalue for p in report.pairwise]
    assert [p.pvalue_holm for p in report.pairwise] == pytest.approx(list(stats.holm(raw)))
    assert set(report.mean_ranks) == {"resnet18", "fc_attention", "logreg"}
    assert sum(report.mean_ranks.values()) == pytest.approx(6)  # ranks 1 + 2 + 3 per fold
    assert "descriptive only, not a test" in record["mean_ranks_sentence"]
    from cvkit.report import render_comparison

    render_comparison(report)
    text = capsys.readouterr().out
    assert "Friedman" not in text and "descriptive only" in text


@pytest.fixture(scope="module")
def other_data_set_run(tmp_path_factory):
    """The same three models as ``two_variants`` on a second, different data set."""
    from cvkit.data import make_demo

    other = make_demo(60, image_size=16, seed=2)
    out = tmp_path_factory.mktemp("other") / "run"
    return cvkit.evaluate(["plugins/fc_attention.py", "logreg"], data=other, out=out, **FAST)


def test_compare_over_runs_ranks_models_with_data_sets_as_blocks(two_variants, other_data_set_run, tmp_path):
    """Item 1: `cvkit compare RUN_A RUN_B` gives Friedman/Nemenyi over the data sets and a CD diagram."""
    runs = [two_variants, other_data_set_run]
    ranking = cvkit.comparison.compare_runs(runs)
    models = ranking.models
    expected = [
        [r.metrics[r.metrics.model == m].groupby(["repeat", "fold"])["auc"].mean().mean() for m in models]
        for r in runs
    ]
    assert ranking.scores == pytest.approx(np.array(expected))
    reference = stats.friedman(np.array(expected))
    assert ranking.friedman.pvalue == pytest.approx(reference.pvalue) and ranking.friedman.n_blocks == 2
    png, out = tmp_path / "figs" / "cd.png", tmp_path / "ranking.json"
    args = [str(r.run_dir) for r in runs]
    assert main(["compare", *args, "--cd-diagram", str(png), "--json", str(out)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in png.parent.iterdir()] == ["cd.png"]  # no temporary file left behind
    assert json.loads(out.read_text())["ranking"]["n_blocks"] == 2


def test_compare_over_runs_refuses_different_models_and_one_data_set(two_variants, tiny, tmp_path, capsys):
    from cvkit.data import make_demo

    small = cvkit.evaluate(["logreg"], data=make_demo(60, image_size=16, seed=3), out=tmp_path / "r", **FAST)
    assert main(["compare", str(two_variants.run_dir), str(small.run_dir)]) == 2
    error = capsys.readouterr().err.strip()
    assert "differ from those of" in error and "same models" in error and len(error.splitlines()) <= 3
    assert main(["compare", str(two_variants.run_dir), str(two_variants.run_dir)]) == 2
    assert "same data set" in capsys.readouterr().err


def _fake_report(comparisons=(), holdout=()):
    from types import SimpleNamespace

    report = SimpleNamespace(
        comparisons=list(comparisons), alpha=0.05, rope=0.01, selection=[], holdout=list(holdout), aa=None
    )
    results = SimpleNamespace(run=dict(data=dict(class_counts=dict(a=50, b=50))), jobs=[])
    return report, results


def test_sample_level_warning_controls_its_error_rate():
    """Item 7: the smallest of 2r raw p-values fired in 9.7% of null runs; Holm over them keeps alpha."""
    from types import SimpleNamespace

    from cvkit.comparison import _warnings

    def comparison(pvalues):
        tests = [
            SimpleNamespace(delong=SimpleNamespace(pvalue=p), mcnemar=SimpleNamespace(pvalue=q))
            for p, q in zip(pvalues[::2], pvalues[1::2])
        ]
        return SimpleNamespace(variant="v", verdict="inconclusive", sample_tests=tests, ttest=None)

    lone = comparison([0.03, 0.4, 0.6, 0.5, 0.7, 0.9])  # one of six below 0.05: not significant after Holm
    assert not [w for w in _warnings(*_fake_report([lone]), 100) if "sample-level" in w]
    strong = comparison([0.001, 0.4, 0.6, 0.5, 0.7, 0.9])  # 6 x 0.001 < 0.05
    assert [w for w in _warnings(*_fake_report([strong]), 100) if "sample-level" in w]
    # under the null (independent uniform p-values) the warning fires at most at alpha
    rng = np.random.default_rng(0)
    fired = sum(
        bool([w for w in _warnings(*_fake_report([comparison(rng.uniform(size=6))]), 100) if "sample" in w])
        for _ in range(2000)
    )
    assert fired / 2000 <= 0.05 + 2.33 * np.sqrt(0.05 * 0.95 / 2000)


def test_holdout_gap_warning_counts_the_holdout_sampling_error():
    """Item 7: with 156 hold-out samples and no shift, "outside the CV interval" fired in 14% of runs;
    the gap test counts both estimates' sampling error and keeps its false-alarm rate near alpha."""
    from cvkit.comparison import holdout_gap_pvalue

    rng = np.random.default_rng(0)
    truth, n_holdout, n_sim = 0.85, 156, 4000
    old = new = 0
    for _ in range(n_sim):
        # the hold-out accuracy and its bootstrap-like standard error
        score = rng.binomial(n_holdout, truth) / n_holdout
        score_se = np.sqrt(score * (1 - score) / n_holdout)
        # the CV estimate: mean of 15 correlated fold scores, corrected se with 14 df
        cv_se = 0.015 * np.sqrt(rng.chisquare(14) / 14)
        cv_mean = truth + 0.015 * rng.normal()
        half = sps.t.ppf(0.975, 14) * cv_se
        old += not (cv_mean - half <= score <= cv_mean + half)
        new += holdout_gap_pvalue(score, score_se, cv_mean, cv_se, 14) < 0.05
    assert old / n_sim > 0.2  # the old rule: far above 5%
    assert new / n_sim <= 0.05 + 2.33 * np.sqrt(0.05 * 0.95 / n_sim)
    # and a real shift is still caught
    assert holdout_gap_pvalue(0.70, np.sqrt(0.7 * 0.3 / 156), 0.85, 0.015, 14) < 0.01
