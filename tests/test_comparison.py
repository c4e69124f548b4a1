import json

import numpy as np
import pytest
from scipy import stats as sps

import cvkit
from cvkit import stats
from cvkit.cli import main
from cvkit.comparison import VERDICTS
from cvkit.errors import ConfigError

FAST = dict(folds=3, repeats=2, epochs=2)


@pytest.fixture(scope="module")
def two_variants(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "run"
    return cvkit.evaluate(["plugins/fc_attention.py", "logreg"], data=tiny, out=out, **FAST)


def test_compare_tests_each_variant_on_the_paired_fold_differences(two_variants):
    report = cvkit.compare(two_variants)
    assert [c.variant for c in report.comparisons] == ["fc_attention", "logreg"]
    for c in report.comparisons:
        diffs = two_variants.paired_differences(c.variant, "auc")
        assert np.allclose(c.diffs, diffs["difference"])
        n_train, n_test = two_variants.fold_sizes
        reference = stats.corrected_ttest(diffs["difference"], n_train, n_test)
        assert c.ttest.pvalue == pytest.approx(reference.pvalue)
        assert c.verdict in VERDICTS
        assert len(c.sample_tests) == 2  # one McNemar and DeLong per repeat
        assert c.bootstrap is not None and c.bootstrap.low <= c.bootstrap.estimate <= c.bootstrap.high
        assert c.paragraph.startswith(c.variant)
    holm = stats.holm([c.ttest.pvalue for c in report.comparisons])
    assert [c.pvalue_holm for c in report.comparisons] == pytest.approx(list(holm))
    assert report.aa is None and report.noise is None


def test_verdict_follows_the_rules():
    clear = np.full(15, 0.05) + np.linspace(-0.01, 0.01, 15)
    (v,) = stats.verdicts([clear], 80, 20, alpha=0.05, rope=0.01)
    assert v.verdict == "better" and v.ttest.low > 0.01
    small = np.linspace(-0.001, 0.001, 15)
    (v0,) = stats.verdicts([small], 80, 20, alpha=0.05, rope=0.01)
    assert v0.verdict == "equivalent"


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
    pair = stats.verdicts(
        [_diffs_with_pvalue(0.048), _diffs_with_pvalue(0.027)], 80, 20, alpha=0.05, rope=0.01
    )
    assert [v.pvalue_holm for v in pair] == pytest.approx([0.054, 0.054])
    for v in pair:
        assert v.verdict == "inconclusive" and v.ttest.low < 0 < v.ttest.high
        assert v.confidence == pytest.approx(0.975)
    # --alpha 0.10 with p 0.087: significant, and the 90% interval says so
    (single,) = stats.verdicts([_diffs_with_pvalue(0.087)], 80, 20, alpha=0.10, rope=0.01)
    assert (
        single.verdict == "better" and single.ttest.low > 0 and single.ttest.confidence == pytest.approx(0.90)
    )
    # three variants: 0.001 rejected at 0.05/3, 0.02 at 0.05/2, 0.04 at 0.05: all excluded
    three = stats.verdicts([_diffs_with_pvalue(p) for p in (0.02, 0.001, 0.04)], 80, 20, alpha=0.05, rope=0.0)
    assert [v.confidence for v in three] == pytest.approx([1 - 0.05 / 2, 1 - 0.05 / 3, 0.95])
    assert all(v.verdict == "better" and v.ttest.low > 0 for v in three)
    # many random families: the interval excludes 0 exactly when the Holm-adjusted p is below alpha
    rng = np.random.default_rng(0)
    for _ in range(200):
        family = [0.03 * rng.normal() + 0.05 * rng.normal(size=15) for _ in range(rng.integers(1, 5))]
        alpha = rng.choice([0.05, 0.1, 0.2])
        for v in stats.verdicts(family, 80, 20, alpha=alpha, rope=0.0):
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
    (v,) = stats.verdicts([diffs], 80, 20, alpha=0.05, rope=0.01)
    assert 0 < v.ttest.low and v.ttest.high < 0.01
    assert v.verdict == "better, but negligible"
    (w,) = stats.verdicts([-diffs], 80, 20, alpha=0.05, rope=0.01)
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
    entry = cvkit.compare(two_variants, n_resamples=200).to_json()["comparisons"]["logreg"]
    assert entry["smallest_confirmable_rope"] > 0


def test_selection_rules_and_epoch_curves_are_stored(two_variants):
    assert {"val_auc", "val_loss", "val_acc", "last", "epoch:1", "epoch:2"} <= set(two_variants.rules)
    last = two_variants.rule_metrics("last")
    epoch2 = two_variants.rule_metrics("epoch:2")
    torch_models = last.model != "logreg"
    assert np.allclose(last[torch_models]["auc"].to_numpy(), epoch2["auc"].to_numpy())
    report = cvkit.compare(two_variants)
    assert [e["rule"] for e in report.selection] == ["val_auc", "val_loss", "val_acc", "last"]


def test_seeds_give_an_aa_check_and_a_noise_floor(tiny, tmp_path):
    results = cvkit.evaluate([], data=tiny, out=tmp_path / "run", seeds=2, **FAST)
    report = cvkit.compare(results)
    assert report.comparisons == []
    assert report.aa is not None and report.aa.verdict in VERDICTS
    assert len(report.aa.diffs) == 6
    assert report.noise.n_seeds == 2 and report.noise.seed_sd > 0


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
        "corrected_ttest",
        "bayesian",
        "prob_outperform",
        "minimal_detectable_effect",
        "per_repeat",
        "bootstrap",
        "design_needed",
    }
    assert set(entry["corrected_ttest"]) == {
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
