"""Concatenation fusion: image features projected to d_img, extra features to d_extra, concatenated.

The two widths are hyper-parameters: with d_img >> d_extra the image branch may dominate. A CNN
also fits a few hundred images within epochs and then leaves no gradient for the extras, so the
image branch is dropped for a share `drop_image` of training samples (modality dropout).
    cvkit evaluate plugins/concat_fusion.py --extra handcrafted --param concat_fusion.d_extra=100
"""

import torch
from torch import nn

from cvkit.trainers import backbone

NEEDS_EXTRA = True  # cvkit refuses a run without --extra before training
HYPERPARAMS = {"d_img": 256, "d_extra": 32, "drop_image": 0.5}
SEARCH = {"d_img": [100, 1000], "d_extra": [10, 100]}  # explored with --nested


class ConcatFusion(nn.Module):
    def __init__(self, context):
        super().__init__()
        d_img, d_extra = context.hyperparams["d_img"], context.hyperparams["d_extra"]
        self.backbone, width = backbone(context)
        self.image = nn.Sequential(nn.Linear(width, d_img), nn.ReLU())
        self.extra = nn.Sequential(nn.Linear(context.n_extra, d_extra), nn.ReLU())
        self.fc = nn.Linear(d_img + d_extra, context.n_classes)
        self.drop_image = context.hyperparams["drop_image"]

    def forward(self, x, extra):
        image = self.image(self.backbone(x))
        if self.training:  # modality dropout: the extra features must carry weight on their own
            image = image * (torch.rand(len(x), 1, device=x.device) >= self.drop_image)
        return self.fc(torch.cat([image, self.extra(extra)], dim=1))


def build_model(context):
    return ConcatFusion(context)
