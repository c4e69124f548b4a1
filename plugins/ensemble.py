"""Ensemble: ResNet-18 and ResNet-34 trained together, their class probabilities averaged.

The "fuse several models" idea, compared with the baseline like any other variant. Each member
starts from the run's --weights as the baseline does: `--weights DEFAULT` gives each member its
own pretrained weights; a checkpoint file fits the members of its architecture only (set them
with --param ensemble.members='["resnet18", "resnet18"]'), and a member it does not fit stops
the run before any training, with one line.
"""

import torch
from torch import nn

from cvkit.trainers import classifier

HYPERPARAMS = {"members": ["resnet18", "resnet34"]}


class ProbabilityAverage(nn.Module):
    def __init__(self, context):
        super().__init__()
        config = context.config
        self.members = nn.ModuleList(
            classifier(
                name,
                in_channels=context.in_channels,
                n_classes=context.n_classes,
                stem=config.stem,
                weights=config.weights,  # as the baseline's backbone gets them
            )
            for name in context.hyperparams["members"]
        )

    def forward(self, x):
        probabilities = torch.stack([m(x).softmax(dim=1) for m in self.members]).mean(dim=0)
        return probabilities.clamp_min(1e-7).log()  # log-probabilities: the trainer's softmax recovers them


def build_model(context):
    return ProbabilityAverage(context)
