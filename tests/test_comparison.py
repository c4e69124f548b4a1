import json

import numpy as np
import pytest

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
    models, friedman = report.ranking  # three models, two repeats as blocks
    assert models == ["resnet18", "fc_attention", "logreg"] and friedman.n_blocks == 2


def test_verdict_follows_the_rules():
    from cvkit.comparison import _Context

    context = _Context(None, "auc", 0.01, 0.05, 80, 20, 5, 3, 100, 0)
    t = stats.corrected_ttest(np.full(15, 0.05) + np.linspace(-0.01, 0.01, 15), 80, 20)
    bayes = stats.bayes_correlated_ttest(np.full(15, 0.05), 0.2, 0.01)
    assert context.verdict(t, bayes, t.pvalue) == "better"
    assert context.verdict(t, bayes, 0.2) == "inconclusive"  # Holm can take significance away
    small = np.linspace(-0.001, 0.001, 15)
    t0, b0 = stats.corrected_ttest(small, 80, 20), stats.bayes_correlated_ttest(small, 0.2, 0.01)
    assert context.verdict(t0, b0, t0.pvalue) == "equivalent"


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
    }
    assert entry["bayesian"]["rope"] == 0.02
    assert main(["compare", str(two_variants.run_dir), "--baseline", "nope"]) == 2
