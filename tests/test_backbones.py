"""Plugins on any backbone the baseline may use: `feature_maps(context)` gives every built-in
backbone's stages, the fusion plugins build on it (ResNet and DenseNet alike), a backbone without
feature maps is refused before training with one line, and `ensemble` starts from --weights."""

import re
from dataclasses import replace

import numpy as np
import pytest
import torch

import cvkit
import cvkit.trainers._models
from cvkit.cli import main
from cvkit.data import make_demo
from cvkit.trainers import (
    TrainConfig,
    TrainContext,
    backbone,
    classifier,
    feature_maps,
    load_plugin,
    preflight,
)

FUSION = ["multiscale_pool", "transformer_fusion"]
TINY_RUN = ["--folds", "2", "--repeats", "1", "--epochs", "1", "--jobs", "1", "--report", "none"]


@pytest.fixture(scope="module")
def small():
    """32-pixel images: DenseNet-121's standard stem and three transitions halve a side five times."""
    return make_demo(24, image_size=32, seed=1)


@pytest.fixture
def small_npz(tmp_path, small):
    path = tmp_path / "breastmnist_small.npz"
    images, labels = small.images[:, 0], 1 - small.labels[:, None]
    parts = {"train": slice(0, 16), "val": slice(16, 20), "test": slice(20, 24)}
    np.savez(
        path,
        **{f"{part}_images": images[rows] for part, rows in parts.items()},
        **{f"{part}_labels": labels[rows] for part, rows in parts.items()},
    )
    return path


def _context(dataset, backbone="resnet18", **changes):
    config = TrainConfig(epochs=1, backbone=backbone)
    return replace(TrainContext.for_data(dataset, config, seed=0, device="cpu"), **changes)


@pytest.mark.parametrize(
    "name, widths",
    [
        ("resnet18", (64, 128, 256, 512)),
        ("resnet50", (256, 512, 1024, 2048)),
        ("densenet121", (256, 512, 1024, 1024)),
    ],
)
def test_feature_maps_of_each_builtin_backbone_end_in_what_its_classifier_pools(name, widths, small):
    context = _context(small, name)
    torch.manual_seed(0)
    maps, map_widths = feature_maps(context)
    torch.manual_seed(0)
    features, width = backbone(context)  # the same network, built from the same draws
    x = torch.as_tensor(small.images[:2]).float()
    with torch.no_grad():
        out = maps.eval()(x)
        pooled = features.eval()(x)
    assert map_widths == widths and [m.shape[1] for m in out] == list(widths)
    assert [m.shape[2] for m in out] == sorted((m.shape[2] for m in out), reverse=True)  # finest first
    assert width == widths[-1] and torch.allclose(out[-1].mean(dim=(2, 3)), pooled, atol=1e-5)


def test_feature_maps_of_a_timm_backbone():
    pytest.importorskip("timm")
    dataset = make_demo(4, image_size=32, seed=1)
    maps, widths = feature_maps(_context(dataset, "timm:resnet10t"))
    out = maps(torch.as_tensor(dataset.images).float())
    assert [m.shape[1] for m in out] == list(widths) and widths[-1] == 512


@pytest.mark.parametrize("backbone_name", ["resnet18", "densenet121"])
@pytest.mark.parametrize("name", FUSION)
def test_fusion_plugins_build_and_run_on_resnet_and_densenet(name, backbone_name, small):
    """The pre-flight builds the model as training does and runs it on 2 images: it raises otherwise."""
    plugin = load_plugin(f"plugins/{name}.py")
    context = _context(small, backbone_name, hyperparams=plugin.hyperparams)
    preflight(plugin, context, small.subset([0, 1]))
    model = plugin.build_model(context)
    extra = torch.as_tensor(small.extra[:2]).float()
    x = torch.as_tensor(small.images[:2]).float()
    logits = model(x, extra) if name == "transformer_fusion" else model(x)
    assert logits.shape == (2, small.n_classes)


def test_transformer_fusion_runs_against_a_densenet_baseline(small, tmp_path):
    results = cvkit.evaluate(
        "plugins/transformer_fusion.py",
        data=small,
        baseline="densenet121",
        folds=2,
        repeats=1,
        epochs=1,
        jobs=1,
        out=tmp_path / "run",
    )
    assert set(results.metrics.model) == {"densenet121", "transformer_fusion"}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("cvkit: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_a_backbone_without_feature_maps_is_refused_before_training(small_npz, tmp_path, monkeypatch, capsys):
    """A backbone cvkit knows no stages of (here DenseNet-121, its stages forgotten): one line that
    names the plugin, the backbone and what to do; exit 2; no run folder."""
    stages = dict(cvkit.trainers._models._TORCHVISION_STAGES)
    del stages["densenet121"]
    monkeypatch.setattr(cvkit.trainers._models, "_TORCHVISION_STAGES", stages)
    out = tmp_path / "run"
    plugin = ["plugins/multiscale_pool.py", "--baseline", "densenet121"]
    code = main(["evaluate", *plugin, "--data", small_npz, "--out", out, *TINY_RUN])
    line = _one_error_line(capsys)
    assert code == 2 and not out.exists()
    assert re.search(
        r"multiscale_pool\.py:\d+: multiscale_pool: backbone densenet121 has no feature maps in cvkit; "
        r"run the plugin with --baseline resnet18, .* or build it on backbone\(context\)",
        line,
    ), line


@pytest.fixture
def resnet18_checkpoint(tmp_path):
    torch.manual_seed(7)
    path = tmp_path / "resnet18.pt"
    torch.save(classifier("resnet18", in_channels=1, n_classes=2).state_dict(), path)
    return path


def test_ensemble_members_start_from_the_weights_file(resnet18_checkpoint, small):
    plugin = load_plugin("plugins/ensemble.py")
    context = _context(small, hyperparams={"members": ["resnet18", "resnet18"]})
    context = replace(context, config=replace(context.config, weights=str(resnet18_checkpoint)))
    model = plugin.build_model(context)
    state = torch.load(resnet18_checkpoint, weights_only=True)
    for member in model.members:
        assert torch.equal(member.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])
        assert torch.equal(member.conv1.weight, state["conv1.weight"])


def test_ensemble_refuses_a_file_a_member_cannot_load(resnet18_checkpoint, small_npz, tmp_path, capsys):
    """The default members are ResNet-18 and ResNet-34: a ResNet-18 checkpoint does not fit the second."""
    out = tmp_path / "run"
    plugin = ["plugins/ensemble.py", "--weights", str(resnet18_checkpoint)]
    code = main(["evaluate", *plugin, "--data", small_npz, "--out", out, *TINY_RUN])
    line = _one_error_line(capsys)
    assert code == 2 and not out.exists()
    fit = r"ensemble\.py:\d+: ensemble: .*resnet18\.pt: the checkpoint does not fit resnet34"
    assert re.search(fit, line), line
