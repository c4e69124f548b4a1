"""Multi-scale pooling: average-pooled features of the last two ResNet stages, concatenated.

Small lesions may be clearer at the earlier, finer stage; the classifier sees both.
"""

import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from cvkit.trainers import resnet


class MultiscalePool(nn.Module):
    def __init__(self, context):
        super().__init__()
        config = context.config
        net = resnet(
            config.backbone,
            in_channels=context.in_channels,
            n_classes=context.n_classes,
            stem=config.stem,
            weights=config.weights,
        )
        self.stages = create_feature_extractor(net, {"layer3": "fine", "layer4": "coarse"})
        layer3_width = net.layer4[0].conv1.in_channels  # what layer4 receives is what layer3 gives
        width = layer3_width + net.fc.in_features
        self.fc = nn.Linear(width, context.n_classes)

    def forward(self, x):
        maps = self.stages(x)
        pooled = [torch.flatten(nn.functional.adaptive_avg_pool2d(maps[k], 1), 1) for k in ("fine", "coarse")]
        return self.fc(torch.cat(pooled, dim=1))


def build_model(context):
    return MultiscalePool(context)
