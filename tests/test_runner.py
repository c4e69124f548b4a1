import numpy as np
import pytest

import cvkit
from cvkit.errors import ConfigError
from cvkit.runner import Store, job_seed, make_jobs
from cvkit.splits import make_plan
from cvkit.trainers import TrainConfig, load_plugin

FAST = dict(folds=3, repeats=2, epochs=1)


def _probs(results):
    return results.predictions.filter(like="prob_").to_numpy()


def test_job_seed_is_shared_by_models_and_varies_by_cell(tiny):
    plan = make_plan(tiny.labels, 3, 2, seed=0)
    models = {"resnet18": load_plugin("resnet18"), "fc_attention": load_plugin("plugins/fc_attention.py")}
    jobs = make_jobs(
        models,
        plan,
        n_seeds=2,
        master_seed=0,
        config=TrainConfig(),
        data_fingerprints=dict.fromkeys(models, tiny.fingerprint),
        device="cpu",
    )
    assert len(jobs) == 2 * 6 * 2
    by_cell = {}
    for job in jobs:
        by_cell.setdefault((job.repeat, job.fold, job.seed_index), set()).add(job.seed)
    assert all(len(seeds) == 1 for seeds in by_cell.values())  # paired: same seed for both models
    assert len({next(iter(s)) for s in by_cell.values()}) == len(by_cell)
    assert len({job.key for job in jobs}) == len(jobs)
    assert job_seed(0, 1, 2, 0) == job_seed(0, 1, 2, 0) != job_seed(1, 1, 2, 0)


def test_job_key_changes_with_what_changes_the_result(tiny):
    plan = make_plan(tiny.labels, 3, 1, seed=0)
    models = {"resnet18": load_plugin("resnet18")}

    def keys(**config):
        return [
            j.key
            for j in make_jobs(
                models,
                plan,
                n_seeds=1,
                master_seed=0,
                config=TrainConfig(**config),
                data_fingerprints=dict.fromkeys(models, tiny.fingerprint),
                device="cpu",
            )
        ]

    assert keys() == keys()
    assert keys() != keys(epochs=9)
    assert keys() != keys(select="val_loss")


def test_tiny_end_to_end_evaluate(tiny, tmp_path):
    results = cvkit.evaluate("plugins/fc_attention.py", data=tiny, out=tmp_path / "run", **FAST)
    assert results.counts.trained == 12
    metrics, predictions = results.to_pandas()
    assert len(metrics) == 12 and set(metrics["model"]) == {"resnet18", "fc_attention"}
    assert metrics["auc"].between(0, 1).all()
    # every sample predicted once per model and repeat, with probabilities summing to 1
    per = predictions.groupby(["model", "repeat"])["sample_id"].agg(["count", "nunique"])
    assert (per["count"] == 60).all() and (per["nunique"] == 60).all()
    assert np.allclose(_probs(results).sum(1), 1)
    diffs = results.paired_differences("fc_attention")
    assert len(diffs) == 6
    assert np.allclose(diffs["difference"], diffs["variant"] - diffs["baseline"])


def test_rerun_resumes_without_training_and_gives_the_same_numbers(tiny, tmp_path):
    first = cvkit.evaluate("plugins/fc_attention.py", data=tiny, out=tmp_path / "run", **FAST)
    again = cvkit.evaluate("plugins/fc_attention.py", data=tiny, out=tmp_path / "run", **FAST)
    assert (again.counts.trained, again.counts.resumed) == (0, 12)
    assert np.array_equal(_probs(first), _probs(again))
    assert first.metrics.equals(again.metrics)


def test_interrupted_run_keeps_finished_jobs(tiny, tmp_path, monkeypatch):
    import cvkit.runner._jobs as jobs_module

    real = jobs_module.run_job
    calls = []

    def flaky(job, *args, **parts):
        calls.append(job)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(job, *args, **parts)

    monkeypatch.setattr(jobs_module, "run_job", flaky)
    with pytest.raises(KeyboardInterrupt):  # in this process, where the patch applies
        cvkit.evaluate([], data=tiny, out=tmp_path / "run", executor="inprocess", **FAST)
    with Store(tmp_path / "run") as store:
        assert len(store.done_keys()) == 3
    monkeypatch.setattr(jobs_module, "run_job", real)
    resumed = cvkit.evaluate([], data=tiny, out=tmp_path / "run", **FAST)
    assert (resumed.counts.resumed, resumed.counts.trained) == (3, 3)


def test_unchanged_baseline_is_reused_by_a_later_comparison(tiny, tmp_path, write_plugin):
    reports = tmp_path / "reports"
    first = cvkit.evaluate("plugins/fc_attention.py", data=tiny, reports_dir=reports, **FAST)
    other = write_plugin("other_head", open("plugins/fc_attention.py").read() + "# a different head\n")
    second = cvkit.evaluate(str(other), data=tiny, reports_dir=reports, **FAST)
    assert first.run_dir != second.run_dir
    assert (second.counts.reused, second.counts.trained) == (6, 6)

    def base(r):
        return r.predictions[r.predictions.model == "resnet18"].filter(like="prob_").to_numpy()

    assert np.array_equal(base(first), base(second))
    with Store(second.run_dir) as store:
        reused = {j["reused_from"] for j in store.jobs() if j["model"] == "resnet18"}
    assert reused == {first.run_dir.name}
    # the run's header (terminal, HTML, Markdown) says how many jobs were reused and from where
    from rich.console import Console

    from cvkit.report import render_summary, write_reports

    console = Console(record=True, width=250)
    render_summary(second, console)
    expected = f"6 of 12 jobs reused (identical job keys) from other runs: 6 from {first.run_dir.name}"
    assert expected in console.export_text()
    written = write_reports(second, cvkit.compare(second), ["md"])
    from cvkit import escape

    assert escape.markdown(expected) in written["md"].read_text()


def test_two_fresh_runs_give_identical_probabilities(tiny, tmp_path):
    a = cvkit.evaluate("plugins/fc_attention.py", data=tiny, out=tmp_path / "a" / "run", **FAST)
    b = cvkit.evaluate("plugins/fc_attention.py", data=tiny, out=tmp_path / "b" / "run", **FAST)
    assert b.counts.trained == 12
    assert np.array_equal(_probs(a), _probs(b))


def test_paired_design_shares_splits_and_seeds(tiny, tmp_path):
    results = cvkit.evaluate(
        "plugins/fc_attention.py", data=tiny, out=tmp_path / "run", seeds=2, folds=3, repeats=1, epochs=1
    )
    jobs = results.jobs
    for cell in {(j["repeat"], j["fold"], j["seed_index"]) for j in jobs}:
        seeds = {j["seed"] for j in jobs if (j["repeat"], j["fold"], j["seed_index"]) == cell}
        assert len(seeds) == 1
    test_sets = results.predictions.groupby(["model", "repeat", "fold", "seed_index"])["sample_idx"].apply(
        tuple
    )
    base, variant = test_sets["resnet18"], test_sets["fc_attention"]
    assert base.equals(variant)


def test_run_folder_with_other_settings_is_refused(tiny, tmp_path):
    cvkit.evaluate([], data=tiny, out=tmp_path / "run", folds=3, repeats=1, epochs=1)
    with pytest.raises(ConfigError, match="holds a run with other settings \\(different config\\)"):
        cvkit.evaluate([], data=tiny, out=tmp_path / "run", folds=3, repeats=1, epochs=2)


def test_sklearn_baseline_and_custom_splitter(tiny, tmp_path):
    from sklearn.model_selection import StratifiedKFold

    results = cvkit.evaluate(
        [],
        data=tiny,
        baseline="logreg",
        out=tmp_path / "run",
        cv=StratifiedKFold(4, shuffle=True, random_state=0),
    )
    assert len(results.metrics) == 4 and results.metrics["auc"].notna().all()


def test_hyperparameters_for_a_model_not_in_the_run(tiny, tmp_path):
    with pytest.raises(ConfigError, match="hyper-parameters given for fc_atention, which is not a model"):
        cvkit.evaluate(
            "plugins/fc_attention.py",
            data=tiny,
            out=tmp_path / "run",
            hyperparams={"fc_atention": {"x": 1}},
            **FAST,
        )


SIZED_BY_EXTRA = """
from torch import nn
from cvkit.trainers import backbone


class Model(nn.Module):
    def __init__(self, context):
        super().__init__()
        self.features, width = backbone(context)
        self.unused = nn.Linear(max(context.n_extra, 1), 3)  # sized by the extra features, never run
        self.head = nn.Linear(width, context.n_classes)

    def forward(self, x):
        return self.head(self.features(x))


def build_model(context):
    return Model(context)
"""


def test_changing_only_the_extra_features_reuses_the_jobs_of_models_that_do_not_read_them(
    tiny_npz, tmp_path, capsys
):
    """Issue 18, item 4: a job's key names the extra features only when its model reads them
    (its forward takes them, or its build depends on them): a new extra-feature file retrains
    what reads it and reuses the rest."""
    from cvkit.cli import main

    plugin = tmp_path / "sized.py"
    plugin.write_text(SIZED_BY_EXTRA)
    common = ["evaluate", str(plugin), "--data", str(tiny_npz), "--folds", "2", "--repeats", "1"]
    common += ["--epochs", "1", "--report", "none"]

    def run(out, *extra):
        assert main([*common, "--out", str(out), *extra]) == 0
        line = " ".join(capsys.readouterr().out.split())
        start = line.index("jobs trained")  # the closing line (the header also names reused jobs)
        return line[start - 2 : line.index("from other runs", start)].strip()

    assert run(tmp_path / "reports" / "plain") == "4 jobs trained, 0 resumed from this run, 0 reused"
    # main: 4 trained, 0 reused; now resnet18 (which never sees them) is reused and sized.py,
    # whose build depends on them, trains again.
    assert (
        run(tmp_path / "reports" / "extra", "--extra", "handcrafted")
        == "2 jobs trained, 0 resumed from this run, 2 reused"
    )
    # The reuse is sound: apart from others, the baseline trained with the extra features present
    # predicts what it predicted without them, bit for bit.
    run(tmp_path / "apart" / "extra", "--extra", "handcrafted")
    plain, extra, apart = (
        cvkit.load(tmp_path / folder).predictions.query("model == 'resnet18'")
        for folder in ("reports/plain", "reports/extra", "apart/extra")
    )
    columns = [c for c in plain.columns if c.startswith("prob_")]
    np.testing.assert_array_equal(plain[columns].to_numpy(), apart[columns].to_numpy())
    np.testing.assert_array_equal(plain[columns].to_numpy(), extra[columns].to_numpy())
    sized = [
        cvkit.load(tmp_path / f).predictions.query("model == 'sized'")[columns].to_numpy()
        for f in ("reports/plain", "apart/extra")
    ]
    assert not np.array_equal(*sized)  # the model built by the extra features is another model
