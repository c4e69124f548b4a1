"""Ensemble: ResNet-18 and ResNet-34 trained together, their class probabilities averaged.

The "fuse several models" idea, compared with the baseline like any other variant.
"""

import torch
from torch import nn

from cvkit.trainers import resnet

HYPERPARAMS = {"members": ["resnet18", "resnet34"]}


class ProbabilityAverage(nn.Module):
    def __init__(self, context):
        super().__init__()
        config = context.config
        self.members = nn.ModuleList(
            resnet(name, in_channels=context.in_channels, n_classes=context.n_classes, stem=config.stem)
            for name in context.hyperparams["members"]
        )

    def forward(self, x):
        probabilities = torch.stack([m(x).softmax(dim=1) for m in self.members]).mean(dim=0)
        return probabilities.clamp_min(1e-7).log()  # log-probabilities: the trainer's softmax recovers them


def build_model(context):
    return ProbabilityAverage(context)
