"""Trainers stage: plugins, cvkit's torch training recipe and the built-in ResNet baselines."""
from ._context import SELECTION_RULES, TrainConfig, TrainContext
from ._models import RESNETS, backbone, resnet
from ._plugin import BUILTINS, Plugin, load_plugin, plugin_frame
from ._sklearn import SklearnTrainer
from ._torch import TorchTrainer

__all__ = ["BUILTINS", "RESNETS", "SELECTION_RULES", "Plugin", "SklearnTrainer", "TorchTrainer",
           "TrainConfig", "TrainContext", "backbone", "load_plugin", "plugin_frame", "resnet"]
