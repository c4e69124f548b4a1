"""Multi-scale pooling: average-pooled features of the backbone's last two stages, concatenated.

Small lesions may be clearer at the earlier, finer stage; the classifier sees both. The stages
come from `feature_maps(context)`, so it runs on any backbone the baseline may use.
"""

import torch
from torch import nn

from cvkit.trainers import feature_maps


class MultiscalePool(nn.Module):
    def __init__(self, context):
        super().__init__()
        self.stages, widths = feature_maps(context)  # a pair: the maps of every stage, their channels
        self.fc = nn.Linear(widths[-2] + widths[-1], context.n_classes)

    def forward(self, x):
        fine, coarse = self.stages(x)[-2:]
        pooled = [torch.flatten(nn.functional.adaptive_avg_pool2d(m, 1), 1) for m in (fine, coarse)]
        return self.fc(torch.cat(pooled, dim=1))


def build_model(context):
    return MultiscalePool(context)
