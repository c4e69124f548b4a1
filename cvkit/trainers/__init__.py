"""Trainers stage: plugins, cvkit's torch training recipe and the built-in backbones."""

from ._context import SELECTION_RULES, TrainConfig, TrainContext
from ._examples import describe_plugin, example_plugins, write_plugin_template
from ._frozen import FrozenFeatures
from ._models import (
    BACKBONES,
    OFFLINE,
    RESNETS,
    WEIGHTS_MIRROR,
    Backbone,
    backbone,
    classifier,
    ensure_pretrained,
    fetch_pretrained,
    resnet,
)
from ._plugin import BUILTINS, Plugin, load_plugin, plugin_frame
from ._preflight import preflight
from ._sklearn import SklearnTrainer
from ._state import job_process_state
from ._torch import TorchTrainer

__all__ = [
    "BACKBONES",
    "BUILTINS",
    "Backbone",
    "OFFLINE",
    "RESNETS",
    "SELECTION_RULES",
    "FrozenFeatures",
    "Plugin",
    "SklearnTrainer",
    "TorchTrainer",
    "TrainConfig",
    "TrainContext",
    "WEIGHTS_MIRROR",
    "backbone",
    "classifier",
    "describe_plugin",
    "ensure_pretrained",
    "example_plugins",
    "fetch_pretrained",
    "job_process_state",
    "load_plugin",
    "plugin_frame",
    "preflight",
    "resnet",
    "write_plugin_template",
]
