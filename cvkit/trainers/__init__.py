"""Trainers stage: plugins, cvkit's torch training recipe and the built-in backbones."""

from ._context import AUGMENTATIONS, CLASS_WEIGHTS, PRECISIONS, SELECTION_RULES, TrainConfig, TrainContext
from ._examples import describe_plugin, example_plugins, write_plugin_template
from ._features import IMPUTATIONS
from ._frozen import FrozenFeatures
from ._models import (
    BACKBONES,
    OFFLINE,
    RESNETS,
    STEMS,
    WEIGHTS_MIRROR,
    Backbone,
    FeatureMaps,
    NoFeatureMaps,
    backbone,
    classifier,
    ensure_pretrained,
    feature_maps,
    fetch_pretrained,
    is_backbone,
    resnet,
)
from ._plugin import BUILTINS, Plugin, load_plugin, plugin_frame
from ._preflight import preflight
from ._protocols import HOOKS, BuildEstimator, BuildModel, MakeTrainer, PluginModule, Trainer
from ._sklearn import SklearnTrainer
from ._state import job_process_state
from ._torch import TorchTrainer

__all__ = [
    "AUGMENTATIONS",
    "BACKBONES",
    "BUILTINS",
    "Backbone",
    "BuildEstimator",
    "BuildModel",
    "CLASS_WEIGHTS",
    "HOOKS",
    "IMPUTATIONS",
    "MakeTrainer",
    "NoFeatureMaps",
    "OFFLINE",
    "PRECISIONS",
    "RESNETS",
    "SELECTION_RULES",
    "STEMS",
    "FeatureMaps",
    "FrozenFeatures",
    "Plugin",
    "PluginModule",
    "SklearnTrainer",
    "TorchTrainer",
    "Trainer",
    "TrainConfig",
    "TrainContext",
    "WEIGHTS_MIRROR",
    "backbone",
    "classifier",
    "describe_plugin",
    "ensure_pretrained",
    "example_plugins",
    "feature_maps",
    "fetch_pretrained",
    "is_backbone",
    "job_process_state",
    "load_plugin",
    "plugin_frame",
    "preflight",
    "resnet",
    "write_plugin_template",
]
