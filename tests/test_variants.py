"""The variant plugins, extra features and the leakage guards around them."""

from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import cvkit
from cvkit.cli import main
from cvkit.data import HANDCRAFTED, handcrafted_features, join_extra_csv, make_demo
from cvkit.errors import DataError
from cvkit.trainers import TrainConfig, TrainContext, example_plugins, load_plugin

PLUGINS = list(example_plugins().values())  # plugins/, as installed with cvkit


@pytest.mark.parametrize("path", PLUGINS, ids=[p.stem for p in PLUGINS])
def test_every_plugin_runs_end_to_end_and_reads_as_an_example(path, tiny, tmp_path):
    assert len(path.read_text().splitlines()) <= 80
    assert path.read_text().startswith('"""')  # says what the idea is before any code
    results = cvkit.evaluate(str(path), data=tiny, folds=3, repeats=1, epochs=1, out=tmp_path / "run")
    metrics = results.metrics
    assert len(metrics[metrics.model == path.stem]) == 3
    assert metrics["auc"].between(0, 1).all()


@pytest.mark.parametrize("name", ["concat_fusion", "gated_fusion", "transformer_fusion", "extra_only"])
def test_plugins_that_need_extra_features_refuse_a_run_without_them_before_training(name, tiny, tmp_path):
    """The fusion plugins declare NEEDS_EXTRA; an estimator on ESTIMATOR_INPUTS "extra" needs them too."""
    bare = replace(tiny, extra=None, extra_names=())
    with pytest.raises(cvkit.CvkitError, match=f"{name}.py: {name} needs extra features: pass --extra"):
        cvkit.evaluate(f"plugins/{name}.py", data=bare, folds=3, repeats=1, epochs=1, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before the run folder was made


def test_needs_extra_must_be_true_or_false(write_plugin):
    plugin = write_plugin("fusion", 'NEEDS_EXTRA = "yes"\n\n\ndef make_trainer(context):\n    pass\n')
    with pytest.raises(cvkit.CvkitError, match="NEEDS_EXTRA must be True or False, not 'yes'"):
        load_plugin(str(plugin))


def _context(data, **config):
    return TrainContext(
        config=TrainConfig(**{"epochs": 1, **config}),
        n_classes=2,
        in_channels=1,
        image_size=(16, 16),
        class_names=data.class_names,
        positive=data.positive,
        extra_names=data.extra_names,
        seed=3,
        device="cpu",
    )


def test_scaler_and_imputer_are_fitted_on_the_training_part_only(tiny):
    extra = tiny.extra.copy()
    extra[5, 0] = np.nan
    data = replace(tiny, extra=extra)
    train, val, test = data.subset(range(40)), data.subset(range(40, 50)), data.subset(range(50, 60))
    extreme = replace(test, extra=test.extra * 1e6)
    plugin = load_plugin("plugins/concat_fusion.py")
    context = _context(data, impute="median")
    context.hyperparams = plugin.hyperparams
    trainer = plugin.make_trainer(context).fit(train, val, context)
    imputer, scaler = trainer.extra_transform_.named_steps.values()
    assert imputer.statistics_[0] == pytest.approx(np.nanmedian(train.extra[:, 0]))
    filled = np.where(np.isnan(train.extra), imputer.statistics_, train.extra)
    assert scaler.mean_ == pytest.approx(filled.mean(axis=0))
    before = trainer.extra_transform_.transform(test.extra)
    trainer.predict_proba(extreme)  # predicting an extreme test fold refits nothing
    assert np.array_equal(trainer.extra_transform_.transform(test.extra), before)


def test_missing_extra_values_need_an_imputation_rule(tiny, tmp_path):
    extra = tiny.extra.copy()
    extra[[3, 9], 1] = np.nan
    data = replace(tiny, extra=extra)
    with pytest.raises(
        DataError, match="column 'lesion_size_mm' has 2 missing value\\(s\\); pass --impute mean"
    ):
        cvkit.evaluate("plugins/extra_only.py", data=data, folds=3, repeats=1, out=tmp_path / "a")
    results = cvkit.evaluate(
        "plugins/extra_only.py", data=data, folds=3, repeats=1, impute="mean", out=tmp_path / "b"
    )
    assert results.run["data"]["missing_extra"] == 2 and results.metrics["auc"].notna().all()


def test_autoencoder_sees_only_the_training_part(tiny):
    plugin = load_plugin("plugins/deep_latent.py")
    context = _context(tiny)
    context.hyperparams = {**plugin.hyperparams, "ae_epochs": 1}
    train, val, test = tiny.subset(range(40)), tiny.subset(range(40, 50)), tiny.subset(range(50, 60))
    trainer = plugin.make_trainer(context).fit(train, val, context)
    assert np.array_equal(trainer.ae_sample_ids_, train.sample_ids)
    assert not set(trainer.ae_sample_ids_) & (set(test.sample_ids) | set(val.sample_ids))
    assert trainer.predict_proba(test).shape == (10, 2)


def test_extra_csv_is_joined_by_sample_id(tiny, tmp_path):
    path = tmp_path / "extra.csv"
    rows = ["sample_id,bmi,marker"] + [
        f"{sid},{20 + i},{'' if i == 7 else i * 0.5}" for i, sid in reversed(list(enumerate(tiny.sample_ids)))
    ]
    path.write_text("\n".join(rows) + "\n")
    joined = join_extra_csv(tiny, path)
    assert joined.extra_names == ("bmi", "marker")
    assert joined.extra[:, 0].tolist() == [20.0 + i for i in range(60)]
    assert np.isnan(joined.extra[7, 1]) and joined.fingerprint != tiny.fingerprint
    path.write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(DataError, match="no row for 1 sample\\(s\\) of demo, e.g. 'demo-0000'"):
        join_extra_csv(tiny, path)


def test_handcrafted_features_are_deterministic_per_image(tiny):
    a, b = handcrafted_features(tiny), handcrafted_features(tiny.subset(range(10)))
    assert a.extra.shape == (60, len(HANDCRAFTED)) and np.isfinite(a.extra).all()
    assert np.array_equal(a.extra[:10], b.extra)  # each image's features depend on that image alone


def test_demo_extra_signal_zero_is_pure_noise():
    demo = make_demo(428, image_size=8, extra_signal=0.0)
    for column in range(3):
        assert abs(roc_auc_score(demo.labels, demo.extra[:, column]) - 0.5) < 0.1
    informative = make_demo(428, image_size=8, extra_signal=3.0)
    assert roc_auc_score(informative.labels, informative.extra[:, 0]) > 0.9


def test_demo_extra_signal_only_for_demo(tiny_npz, capsys):
    assert main(["evaluate", "--data", str(tiny_npz), "--demo-extra-signal", "2"]) == 2
    assert "--demo-extra-signal applies to the demo data only" in capsys.readouterr().err


def test_nested_search_chooses_inside_the_outer_training_part(tiny, tmp_path):
    plugin = load_plugin("plugins/mlp_head.py").nested(inner_folds=2, val_fraction=0.1)
    context = _context(tiny)
    context.hyperparams = dict(plugin.hyperparams)
    train, val, test = tiny.subset(range(40)), tiny.subset(range(40, 50)), tiny.subset(range(50, 60))
    trainer = plugin.make_trainer(context).fit(train, val, context)
    assert trainer.inner_sample_ids_ == set(train.sample_ids) | set(val.sample_ids)
    assert not trainer.inner_sample_ids_ & set(test.sample_ids)  # the outer test fold is never looked at
    assert [r["params"]["hidden"] for r in trainer.inner_results_] == [100, 500, 1000]
    assert trainer.choice_ == max(trainer.inner_results_, key=lambda r: r["score"])["params"]
    assert trainer.predict_proba(test).shape == (10, 2) and set(trainer.checkpoints_) >= {"val_auc", "last"}


def test_nested_run_reports_the_choice_per_outer_fold(tiny, tmp_path):
    with pytest.warns(UserWarning, match="declares a search space .* without --nested its defaults"):
        cvkit.evaluate("plugins/mlp_head.py", data=tiny, folds=3, repeats=1, epochs=1, out=tmp_path / "plain")
    results = cvkit.evaluate(
        "plugins/mlp_head.py",
        data=tiny,
        folds=3,
        repeats=1,
        epochs=1,
        nested=True,
        inner_folds=2,
        out=tmp_path / "nested",
    )
    entry = cvkit.compare(results).nested["mlp_head"]
    assert len(entry["choices"]) == 3 and entry["inner_folds"] == 2
    assert entry["most_common"]["hidden"] in (100, 500, 1000) and 1 / 3 <= entry["stability"] <= 1


def test_holdout_part_stays_out_of_cross_validation(tiny_npz, tmp_path):
    results = cvkit.evaluate(
        [], data=str(tiny_npz), folds=3, repeats=1, epochs=1, holdout="test", out=tmp_path / "run"
    )
    assert results.is_holdout.sum() == 10 and not results.is_holdout[:50].any()
    tested = results.predictions["sample_idx"]
    assert tested.max() < 50 and len(tested) == 50  # every CV sample tested once, no hold-out sample
    holdout = results.rule_predictions("holdout")
    assert len(holdout) == 3 * 10 and set(holdout["sample_id"]) == {f"test-{i:05d}" for i in range(10)}
    entry = cvkit.compare(results).holdout[0]
    assert entry["model"] == "resnet18" and entry["n"] == 10
    assert entry["gap"] == pytest.approx(entry["score"] - entry["cv_mean"])
    assert entry["low"] <= entry["score"] <= entry["high"]


def test_holdout_needs_official_parts(tiny, tmp_path):
    with pytest.raises(DataError, match="--holdout test: demo has no official parts"):
        cvkit.evaluate([], data=tiny, holdout="test", out=tmp_path / "run")
    parted = replace(tiny, parts=np.array(["train"] * 50 + ["final"] * 10))
    with pytest.raises(DataError, match="has 0 of 60 samples in part 'test'; its parts are final, train"):
        parted.split_off("test")
    cv, held = parted.split_off("final")
    assert (len(cv), len(held)) == (50, 10)
