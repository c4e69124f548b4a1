"""Linear probe: a logistic-regression head on the frozen features of the run's backbone.

What do the backbone's features alone carry? Meant for pretrained weights (``--weights DEFAULT``
or ``--weights PATH``): cvkit computes each image's features once, caches them for every job and
later run with the same weights, and trains only the head, in seconds. Without weights the
backbone is a random (per-seed) network and the probe measures random features.
"""

from torch import nn

from cvkit.trainers import FrozenFeatures, backbone


def build_model(context):
    features, width = backbone(context)
    return FrozenFeatures(features, nn.Linear(width, context.n_classes))
