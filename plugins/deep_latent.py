"""Deep latent fusion: an autoencoder's latent code joins the CNN features before the classifier.

A small convolutional autoencoder is trained on the training part of the outer fold only (never
on validation or test images); its latent code, frozen, is concatenated with the CNN features.
The latent dimension is a hyper-parameter.
"""

import torch
from torch import nn

from cvkit.trainers import TorchTrainer, backbone

HYPERPARAMS = {"latent": 50, "ae_epochs": 10}


def autoencoder(channels, size, latent):
    small = size // 4
    down = [nn.Conv2d(channels, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU()]
    encoder = nn.Sequential(*down, nn.Flatten(), nn.Linear(32 * small * small, latent))
    up = [nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(16, channels, 4, 2, 1)]
    decoder = nn.Sequential(nn.Linear(latent, 32 * small * small), nn.Unflatten(1, (32, small, small)), *up)
    return encoder, decoder


class LatentFusion(nn.Module):
    def __init__(self, context, encoder):
        super().__init__()
        self.backbone, width = backbone(context)
        self.encoder = encoder.requires_grad_(False)
        self.fc = nn.Linear(width + context.hyperparams["latent"], context.n_classes)

    def forward(self, x):
        with torch.no_grad():
            code = self.encoder.eval()(x)
        return self.fc(torch.cat([self.backbone(x), code], dim=1))


class DeepLatentTrainer(TorchTrainer):
    def __init__(self):
        super().__init__(build_model=lambda context: LatentFusion(context, self.encoder_))

    def fit(self, train, val, context):
        self.ae_sample_ids_ = train.sample_ids.copy()  # the only images the autoencoder ever sees
        self.encoder_ = self._fit_autoencoder(train.images, context)
        return super().fit(train, val, context)

    def _fit_autoencoder(self, images, context):
        torch.manual_seed(context.seed)
        x = torch.as_tensor(images).float().div(127.5).sub(1).to(context.device)
        size = x.shape[-1] - x.shape[-1] % 4
        x = x[..., :size, :size]
        encoder, decoder = (
            m.to(context.device) for m in autoencoder(x.shape[1], size, context.hyperparams["latent"])
        )
        optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)
        generator = torch.Generator().manual_seed(context.seed)
        for _ in range(context.hyperparams["ae_epochs"]):
            for batch in torch.randperm(len(x), generator=generator).split(64):
                optimizer.zero_grad()
                loss = nn.functional.mse_loss(decoder(encoder(x[batch])), x[batch])
                loss.backward()
                optimizer.step()
        return CropTo(size, encoder)


class CropTo(nn.Sequential):
    """The encoder, on images cropped to the size it was trained on (a multiple of 4)."""

    def __init__(self, size, encoder):
        super().__init__(encoder)
        self.size = size

    def forward(self, x):
        return super().forward(x[..., : self.size, : self.size])


def make_trainer(context):
    return DeepLatentTrainer()
