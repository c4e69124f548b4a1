"""Gated fusion: a learned gate weighs the image and extra-feature branches, feature by feature.

Both branches are projected to width d; the gate decides, per feature, how much comes from the
image and how much from the extra features (few parameters for unequal inputs).

    fused = g * image + (1 - g) * extra,   g = sigmoid(W [image, extra])

The image branch is dropped for a share `drop_image` of training samples (modality dropout), so
that a CNN that fits the training images quickly does not starve the extra branch of gradient.
"""

import torch
from torch import nn

from cvkit.trainers import backbone

NEEDS_EXTRA = True  # cvkit refuses a run without --extra before training
HYPERPARAMS = {"d": 64, "drop_image": 0.5}


class GatedFusion(nn.Module):
    def __init__(self, context):
        super().__init__()
        d = context.hyperparams["d"]
        self.backbone, width = backbone(context)
        self.image = nn.Sequential(nn.Linear(width, d), nn.ReLU())
        self.extra = nn.Sequential(nn.Linear(context.n_extra, d), nn.ReLU())
        self.gate = nn.Linear(2 * d, d)
        self.fc = nn.Linear(d, context.n_classes)
        self.drop_image = context.hyperparams["drop_image"]

    def forward(self, x, extra):
        image, extra = self.image(self.backbone(x)), self.extra(extra)
        if self.training:  # modality dropout
            image = image * (torch.rand(len(x), 1, device=x.device) >= self.drop_image)
        gate = torch.sigmoid(self.gate(torch.cat([image, extra], dim=1)))
        return self.fc(gate * image + (1 - gate) * extra)


def build_model(context):
    return GatedFusion(context)
