"""MLP head: the fc layer replaced by Linear(d, hidden) -> ReLU -> Dropout -> Linear(hidden, classes).

Backbone, recipe, seeds and splits are the baseline's; only the head differs.
    cvkit evaluate plugins/mlp_head.py --param mlp_head.hidden=100
    cvkit evaluate plugins/mlp_head.py --nested --inner-folds 3
"""

from torch import nn

from cvkit.trainers import backbone

HYPERPARAMS = {"hidden": 500, "dropout": 0.5}
SEARCH = {"hidden": [100, 500, 1000]}  # explored with --nested


def build_model(context):
    features, width = backbone(context)
    hidden = context.hyperparams["hidden"]
    head = nn.Sequential(
        nn.Linear(width, hidden),
        nn.ReLU(),
        nn.Dropout(context.hyperparams["dropout"]),
        nn.Linear(hidden, context.n_classes),
    )
    return nn.Sequential(features, head)
