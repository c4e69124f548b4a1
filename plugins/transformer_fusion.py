"""Transformer fusion: image and extra-feature tokens through a TransformerEncoder, read at a CLS token.

Image tokens (one per position of the backbone's last feature map, from `feature_maps(context)`,
so any backbone the baseline may use) and one token per extra feature pass through a small
TransformerEncoder; a CLS token's output is the fused vector.
Image tokens are zeroed for a share `drop_image` of training samples (modality dropout).
"""

import torch
from torch import nn

from cvkit.trainers import feature_maps

NEEDS_EXTRA = True  # cvkit refuses a run without --extra before training
HYPERPARAMS = {"d_model": 64, "heads": 4, "layers": 2, "drop_image": 0.5}


class TransformerFusion(nn.Module):
    def __init__(self, context):
        super().__init__()
        d = context.hyperparams["d_model"]
        self.feature_maps, widths = feature_maps(context)  # a pair: every stage's map, their channels
        self.image_tokens = nn.Linear(widths[-1], d)
        # Each extra feature j becomes the token value_j * w_j + b_j (a feature tokenizer).
        self.extra_weight = nn.Parameter(torch.randn(context.n_extra, d) * 0.02)
        self.extra_bias = nn.Parameter(torch.zeros(context.n_extra, d))
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        layer = nn.TransformerEncoderLayer(
            d, context.hyperparams["heads"], dim_feedforward=2 * d, dropout=0.1, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, context.hyperparams["layers"], enable_nested_tensor=False)
        self.fc = nn.Linear(d, context.n_classes)
        self.drop_image = context.hyperparams["drop_image"]

    def forward(self, x, extra):
        image = self.image_tokens(self.feature_maps(x)[-1].flatten(2).transpose(1, 2))  # (B, H*W, d)
        if self.training:  # modality dropout
            image = image * (torch.rand(len(x), 1, 1, device=x.device) >= self.drop_image)
        tabular = extra[:, :, None] * self.extra_weight + self.extra_bias  # (B, F, d)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), image, tabular], dim=1)
        return self.fc(self.encoder(tokens)[:, 0])


def build_model(context):
    return TransformerFusion(context)
