import numpy as np
import pytest

import cvkit
import cvkit.api
from cvkit.errors import ConfigError, PluginError
from cvkit.trainers import TrainConfig, TrainContext, load_plugin, resnet


def _context(data, **config):
    return TrainContext(
        config=TrainConfig(**{"epochs": 1, **config}),
        n_classes=data.n_classes,
        in_channels=1,
        image_size=(16, 16),
        class_names=data.class_names,
        positive=data.positive,
        extra_names=data.extra_names,
        seed=5,
        device="cpu",
    )


def _fit_predict(plugin, data, **config):
    context = _context(data, **config)
    context.hyperparams = plugin.hyperparams
    trainer = plugin.make_trainer(context)
    trainer.fit(data.subset(range(40)), data.subset(range(40, 50)), context)
    return trainer, trainer.predict_proba(data.subset(range(50, 60)))


def test_builtin_resnet_trains_and_predicts_probabilities(tiny):
    trainer, probs = _fit_predict(load_plugin("resnet18"), tiny, epochs=2)
    assert probs.shape == (10, 2) and np.allclose(probs.sum(1), 1)
    assert [r["epoch"] for r in trainer.history_] == [1, 2]
    assert set(trainer.history_[0]) == {"epoch", "train_loss", "val_loss", "val_acc", "val_auc"}
    assert set(trainer.checkpoints_) == {"val_auc", "val_loss", "val_acc", "last"}


def test_same_seed_same_predictions_other_seed_other_predictions(tiny):
    plugin = load_plugin("resnet18")
    _, a = _fit_predict(plugin, tiny)
    _, b = _fit_predict(plugin, tiny)
    assert np.array_equal(a, b)
    context = _context(tiny)
    context.seed = 6
    trainer = plugin.make_trainer(context).fit(tiny.subset(range(40)), tiny.subset(range(40, 50)), context)
    assert not np.array_equal(trainer.predict_proba(tiny.subset(range(50, 60))), a)


def test_selection_rule_picks_its_own_checkpoint(tiny):
    trainer, _ = _fit_predict(load_plugin("resnet18"), tiny, epochs=3, select="val_loss")
    losses = [r["val_loss"] for r in trainer.history_]
    assert trainer.selected_epoch_ == int(np.argmin(losses)) + 1
    assert trainer.checkpoints_["last"][0] == 3


def test_small_stem_and_channels():
    model = resnet("resnet18", in_channels=3, n_classes=4, stem="small")
    import torch

    assert model(torch.zeros(2, 3, 28, 28)).shape == (2, 4)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)


def test_missing_pretrained_weights_offline_stop_with_a_clear_message(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv("CVKIT_OFFLINE", "1")
    with pytest.raises(ConfigError, match="not in the torch hub cache.*forbids downloading"):
        resnet("resnet18", in_channels=1, n_classes=2, weights="DEFAULT")


def test_fc_attention_plugin_builds_on_the_baseline_backbone(tiny):
    plugin = load_plugin("plugins/fc_attention.py")
    model = plugin.make_trainer(_context(tiny)).build_model(_context(tiny))
    baseline = resnet("resnet18", in_channels=1, n_classes=2)
    assert type(model.backbone.layer4) is type(baseline.layer4)
    assert model.attention.in_features == 512


def test_sklearn_estimator_plugin(write_plugin, tiny):
    path = write_plugin(
        "extra_logreg",
        "from sklearn.linear_model import LogisticRegression\n"
        "ESTIMATOR_INPUTS = 'extra'\n"
        "def build_estimator(context):\n"
        "    return LogisticRegression(C=context.hyperparams['C'])\n"
        "HYPERPARAMS = {'C': 1.0}\n",
    )
    plugin = load_plugin(str(path), {"C": 0.5})
    assert plugin.hyperparams == {"C": 0.5}
    _, probs = _fit_predict(plugin, tiny)
    assert probs.shape == (10, 2)


def test_syntax_error_names_file_and_line(write_plugin):
    path = write_plugin("broken", "def build_model(context):\n    return (\n")
    with pytest.raises(PluginError, match=r"broken.py:\d+: syntax error"):
        load_plugin(str(path))


def test_plugin_without_a_hook(write_plugin):
    path = write_plugin("empty", "x = 1\n")
    with pytest.raises(PluginError, match="empty.py: defines none of build_model"):
        load_plugin(str(path))


def test_import_error_in_plugin_names_line(write_plugin):
    path = write_plugin("badimport", "import os\nimport not_a_module_xyz\n")
    with pytest.raises(PluginError, match="badimport.py:2: importing the plugin failed: ModuleNotFoundError"):
        load_plugin(str(path))


def test_unknown_plugin_suggests_builtin():
    with pytest.raises(PluginError, match="did you mean 'resnet18'"):
        load_plugin("resnet81")


def test_unknown_hyperparameter(write_plugin):
    path = write_plugin("hp", "HYPERPARAMS = {'hidden': 100}\ndef build_model(context):\n    pass\n")
    with pytest.raises(PluginError, match="unknown hyper-parameter\\(s\\) hiden; it declares: hidden"):
        load_plugin(str(path), {"hiden": 5})


WRONG_SHAPE = """
import numpy as np
class Trainer:
    def fit(self, train, val, context):
        return self
    def predict_proba(self, data):
        return np.full((len(data), 3), 1 / 3)
def make_trainer(context):
    return Trainer()
"""

NAN_MODEL = """
import torch
from torch import nn
class Nan(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Linear(1, 2)
    def forward(self, x):
        return self.w(x.mean(dim=(1, 2, 3))[:, None]) * float('nan')
def build_model(context):
    return Nan()
"""

RAISES = """
def build_model(context):
    raise RuntimeError("out of ideas")
"""


@pytest.mark.parametrize(
    "source, message",
    [
        (WRONG_SHAPE, r"predict_proba returned shape \(12, 3\), expected \(12, 2\)"),
        (
            NAN_MODEL,
            r"bad.py: bad failed on repeat 0, fold 0: FloatingPointError: .*NaN or infinite at epoch 1",
        ),
        (
            WRONG_SHAPE.replace("np.full((len(data), 3), 1 / 3)", "np.full((len(data), 2), np.nan)"),
            "bad.py: predict_proba returned NaN or infinite probabilities",
        ),
        (
            WRONG_SHAPE.replace("np.full((len(data), 3), 1 / 3)", "np.full((len(data), 2), 0.7)"),
            "bad.py: predict_proba rows must be probabilities summing to 1",
        ),
        (RAISES, r"bad.py:3: bad failed on repeat 0, fold 0: RuntimeError: out of ideas"),
        (
            "import torch\n"
            + RAISES.replace(
                'RuntimeError("out of ideas")', 'torch.OutOfMemoryError("Tried to allocate 20 GiB")'
            ),
            r"bad.py:4: .*OutOfMemoryError: Tried to allocate 20 GiB; lower --batch-size or --jobs",
        ),
        (
            RAISES.replace('RuntimeError("out of ideas")', "MemoryError()"),
            r"bad.py:3: bad failed on repeat 0, fold 0: MemoryError; lower --batch-size",
        ),
    ],
)
def test_misbehaving_plugins_fail_with_the_file_named(
    source, message, write_plugin, tiny, tmp_path, monkeypatch
):
    # What a job says when its plugin fails: the pre-flight (tests/test_preflight.py) would stop
    # these plugins before any job, so it is left out here.
    monkeypatch.setattr(cvkit.api, "preflight", lambda plugin, context, sample: True)
    path = write_plugin("bad", source)
    with pytest.raises(PluginError, match=message):
        cvkit.evaluate(str(path), data=tiny, folds=5, repeats=1, epochs=1, out=tmp_path / "run")


def test_more_backbones_by_name():
    import torch

    from cvkit.trainers import classifier

    model = classifier("densenet121", in_channels=1, n_classes=3, stem="small")
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 3)
    assert load_plugin("resnet101").name == "resnet101"


def test_weights_from_a_local_checkpoint(tmp_path):
    import torch

    from cvkit.trainers import classifier

    path = tmp_path / "fine_tuned.pt"
    trained = classifier("resnet18", in_channels=1, n_classes=2)
    torch.save(trained.state_dict(), path)
    loaded = classifier("resnet18", in_channels=1, n_classes=4, weights=str(path))  # other head: kept fresh
    assert torch.equal(loaded.layer3[0].conv1.weight, trained.layer3[0].conv1.weight)
    assert torch.equal(loaded.conv1.weight, trained.conv1.weight)
    with pytest.raises(ConfigError, match="does not fit resnet34"):
        classifier("resnet34", in_channels=1, n_classes=2, weights=str(path))
    with pytest.raises(ConfigError, match="no such checkpoint file"):
        classifier("resnet18", in_channels=1, n_classes=2, weights=str(tmp_path / "missing.pt"))


def test_timm_backbone_says_how_to_install_timm():
    from cvkit.trainers import classifier

    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="needs timm: pip install timm"):
            classifier("timm:resnet10t", in_channels=1, n_classes=2)
    else:
        assert classifier("timm:resnet10t", in_channels=1, n_classes=2) is not None
