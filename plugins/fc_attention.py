"""Attention-weighted fc head: h = backbone(x); logits = fc(h * sigmoid(W h)).

Everything but the head (backbone, stem, recipe, seeds, splits) is the baseline's, so a
comparison against the baseline isolates the attention head.
"""

import torch
from torch import nn

from cvkit.trainers import backbone


class FCAttention(nn.Module):
    def __init__(self, context):
        super().__init__()
        self.backbone, width = backbone(context)
        self.attention = nn.Linear(width, width)
        self.fc = nn.Linear(width, context.n_classes)

    def forward(self, x):
        h = self.backbone(x)
        return self.fc(h * torch.sigmoid(self.attention(h)))


def build_model(context):
    return FCAttention(context)
