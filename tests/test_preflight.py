"""The plugin contract as code: the pre-flight stops a broken plugin before any job with one line,
leaves no run folder, and changes nothing for a plugin that works; the contract is written down
in TrainContext's docstring, docs/plugins.md and the template `cvkit new-plugin` writes."""

import random
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import cvkit
import cvkit.api
from cvkit.cli import main
from cvkit.trainers import TrainConfig, TrainContext, load_plugin, preflight, write_plugin_template
from cvkit.trainers._context import context_attributes

ROOT = Path(__file__).resolve().parents[1]

HEAD = """
import torch
from torch import nn
from cvkit.trainers import backbone
"""

NUM_CLASSES = (
    HEAD
    + """
def build_model(context):
    features, width = backbone(context)
    return nn.Sequential(features, nn.Linear(width, context.num_classes))
"""
)

ONE_OUTPUT = (
    HEAD
    + """
def build_model(context):
    features, width = backbone(context)
    return nn.Sequential(features, nn.Linear(width, 1))
"""
)

PAIR_AS_MODULE = (
    HEAD
    + """
def build_model(context):
    features = backbone(context)
    return nn.Sequential(features, nn.Linear(512, context.n_classes))
"""
)

PAIR_CALLED = (
    HEAD
    + """
class Model(nn.Module):
    def __init__(self, context):
        super().__init__()
        self.backbone = backbone(context)
        self.fc = nn.Linear(512, context.n_classes)

    def forward(self, x):
        return self.fc(self.backbone(x))

def build_model(context):
    return Model(context)
"""
)

FUSION = (
    HEAD
    + """
class Model(nn.Module):
    def __init__(self, context):
        super().__init__()
        self.backbone, width = backbone(context)
        self.fc = nn.Linear(width + context.n_extra, context.n_classes)

    def forward(self, x, extra):
        return self.fc(torch.cat([self.backbone(x), extra], dim=1))

def build_model(context):
    return Model(context)
"""
)

THREE_ARGUMENTS = FUSION.replace("def forward(self, x, extra):", "def forward(self, x, extra, mask):")

MISTAKES = {
    "num_classes": (
        NUM_CLASSES,
        r"mine\.py:8: mine: context has no attribute 'num_classes'; did you mean context\.n_classes\?",
    ),
    "one-output binary head": (
        ONE_OUTPUT,
        r"mine\.py: mine returns one output per image, but a binary head needs two outputs",
    ),
    "backbone pair as a module": (
        PAIR_AS_MODULE,
        r"mine\.py:8: mine: backbone\(context\) returns a pair \(module, width\), not a module: write "
        r"`features, width = backbone\(context\)`",
    ),
    "backbone pair called": (
        PAIR_CALLED,
        r"mine\.py:13: mine: backbone\(context\) returns a pair \(module, width\)",
    ),
    "extra features missing": (
        FUSION,
        r"mine\.py:13: mine: forward\(x, extra\) gets extra=None because this run has no extra "
        r"features .*pass --extra",
    ),
    "forward takes three arguments": (
        THREE_ARGUMENTS,
        r"mine\.py: mine: Model\.forward\(\) missing 1 required positional argument: 'mask'; "
        r"cvkit calls forward\(x\)",
    ),
    "head sized by hand": (
        PAIR_AS_MODULE.replace("features = backbone", "features, width = backbone").replace("512", "256"),
        r"mine\.py: mine: a layer expects 256 inputs but gets 512 \(RuntimeError: .*\); size the head "
        r"from the width the backbone returns: `features, width = backbone\(context\)`",
    ),
    "build_model raises": (
        HEAD + "def build_model(context):\n    raise RuntimeError('out of ideas')\n",
        r"mine\.py:6: mine: building the model and running it on 2 images failed before any job started: "
        r"RuntimeError: out of ideas$",
    ),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_usual_mistake_gets_one_line_exit_2_and_no_run_folder(
    mistake, tiny_npz, tmp_path, monkeypatch, capsys
):
    source, message = MISTAKES[mistake]
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.py").write_text(source)
    monkeypatch.chdir(work)
    options = ["--folds", "2", "--repeats", "1", "--epochs", "1", "--report", "none"]
    code = main(["evaluate", "mine.py", "--data", tiny_npz, *options])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("cvkit: error:")]
    assert code == 2 and "Traceback" not in err
    assert len(errors) == 1 and re.search(message, errors[0]), err
    assert sorted(p.name for p in work.iterdir()) == ["mine.py"]  # no reports/ folder, no run folder


def test_a_misspelt_config_field_is_named_with_its_fields(write_plugin, tiny, tmp_path):
    # ("dropout" would now be offered drop_last: a name close to none of the fields lists them all)
    source = HEAD + "def build_model(context):\n    return nn.Dropout(context.config.momentum)\n"
    path = write_plugin("mine", source)
    message = r"mine\.py:6: mine: context\.config has no attribute 'momentum'; it has: epochs, batch_size"
    with pytest.raises(cvkit.errors.PluginError, match=message):
        cvkit.evaluate(str(path), data=tiny, folds=2, repeats=1, epochs=1, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_searched_candidate_that_breaks_is_caught_with_nested(write_plugin, tiny, tmp_path):
    """With --nested every candidate trains: each is pre-flighted, not only the defaults."""
    source = HEAD + (
        "HYPERPARAMS = {'outputs': 2}\nSEARCH = {'outputs': [2, 1]}\n"
        "def build_model(context):\n    features, width = backbone(context)\n"
        "    return nn.Sequential(features, nn.Linear(width, context.hyperparams['outputs']))\n"
    )
    path = write_plugin("mine", source)
    with pytest.raises(cvkit.errors.PluginError, match="a binary head needs two outputs"):
        cvkit.evaluate(str(path), data=tiny, folds=2, repeats=1, epochs=1, nested=True, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _context(dataset, **changes):
    return replace(TrainContext.for_data(dataset, TrainConfig(epochs=1), seed=0, device="cpu"), **changes)


@pytest.mark.parametrize("example", ["mlp_head", "concat_fusion", "frozen_probe", "resnet18"])
def test_a_working_plugin_passes_and_leaves_every_global_generator_as_it_was(example, tiny):
    """Building a model and a training-mode forward (dropout, modality dropout) draw from the global
    generators; the pre-flight puts them back, so no job's draws change."""
    plugin = load_plugin(example)
    assert plugin.build_model is not None  # the check really builds this one
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    preflight(plugin, _context(tiny, hyperparams=plugin.hyperparams), tiny.subset([0, 1]))
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]


def test_job_predictions_are_those_of_a_run_without_the_pre_flight(tiny, tmp_path, monkeypatch):
    options = dict(data=tiny, folds=2, repeats=1, epochs=1, jobs=1)
    checked = cvkit.evaluate("fc_attention", out=tmp_path / "a" / "run", **options)
    monkeypatch.setattr(cvkit.api, "preflight", lambda plugin, context, sample: True)
    unchecked = cvkit.evaluate("fc_attention", out=tmp_path / "b" / "run", **options)
    a, b = (r.predictions.sort_values(["model", "repeat", "fold", "sample_id"]) for r in (checked, unchecked))
    assert len(a) == 2 * len(tiny)  # baseline and fc_attention, every sample once
    assert np.array_equal(a.filter(like="prob_").to_numpy(), b.filter(like="prob_").to_numpy())


def test_scikit_learn_plugins_are_not_built(write_plugin, tiny):
    path = write_plugin("est", "def build_estimator(context):\n    raise AssertionError('built')\n")
    plugin = load_plugin(str(path))
    assert plugin.build_model is None
    preflight(plugin, _context(tiny), tiny.subset([0, 1]))  # returns without calling the hook


def _table_names(text: str) -> list[str]:
    return re.findall(r"^\| `(\w+)` \| `", text, flags=re.M)


def test_the_context_table_lists_every_attribute_in_the_docs_and_the_docstring():
    names = sorted(context_attributes())
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert sorted(_table_names(docs.split("## `TrainContext`")[1].split("\n## ")[0])) == names
    docstring = TrainContext.__doc__
    assert sorted(re.findall(r"^    (\w+) +\S", docstring.split("=====\n")[2], flags=re.M)) == names


def test_the_template_states_the_contract_and_passes_the_pre_flight(tmp_path, tiny):
    path = write_plugin_template("my_head", tmp_path)
    text = path.read_text()
    assert "backbone(context) returns the pair (module, width)" in text
    assert "a binary head needs two outputs" in text and "docs/plugins.md" in text
    plugin = load_plugin(str(path))
    preflight(plugin, _context(tiny, hyperparams=plugin.hyperparams), tiny.subset([0, 1]))


def test_the_pre_flight_runs_on_the_cpu_and_tells_the_plugin_so(write_plugin, tiny):
    """Whatever the run's device, the check builds on the CPU (no GPU memory or CUDA set-up in the
    driver), and a plugin that places tensors on context.device follows it there."""
    source = HEAD + (
        "class Model(nn.Module):\n"
        "    def __init__(self, context):\n"
        "        super().__init__()\n"
        "        self.backbone, width = backbone(context)\n"
        "        self.fc = nn.Linear(width, context.n_classes)\n"
        "        self.shift = torch.zeros(context.n_classes, device=context.device)\n"
        "    def forward(self, x):\n"
        "        return self.fc(self.backbone(x)) + self.shift\n"
        "def build_model(context):\n"
        "    return Model(context)\n"
    )
    plugin = load_plugin(str(write_plugin("placed", source)))
    preflight(plugin, _context(tiny, device="cuda:7"), tiny.subset([0, 1]))  # no such GPU here either
