"""Built-in backbones: torchvision ResNets adapted to the data's channels and image size."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError

RESNETS = ("resnet18", "resnet34", "resnet50")
STEMS = ("standard", "small")


def resnet(name: str, *, in_channels: int, n_classes: int, stem: str = "standard",
           weights: str | None = None) -> nn.Module:
    """A torchvision ResNet with its first convolution adapted to ``in_channels``.

    ``stem="small"`` swaps the 7x7/2 convolution and max-pool for one 3x3/1 convolution, as
    MedMNIST's 28-pixel baselines do. ``weights`` (e.g. ``"DEFAULT"``) loads torchvision's
    pretrained weights from the local torch hub cache and never downloads them.
    """
    import torchvision

    if name not in RESNETS:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {', '.join(RESNETS)}")
    if stem not in STEMS:
        raise ConfigError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
    model = getattr(torchvision.models, name)(weights=None)
    if weights:
        model.load_state_dict(_local_pretrained_state(name, weights))
    pretrained_conv = model.conv1.weight.detach()
    if stem == "small":
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if weights:  # keep what the pretrained filters see: average colour channels into grey
            with torch.no_grad():
                mean = pretrained_conv.mean(dim=1, keepdim=True)
                model.conv1.weight.copy_(mean.repeat(1, in_channels, 1, 1) * 3 / in_channels)
    model.fc = nn.Linear(model.fc.in_features, n_classes)
    return model


def backbone(context) -> tuple[nn.Module, int]:
    """The run's baseline backbone without its classifier, and its feature width: the starting
    point of a plugin that changes only the head, so the comparison isolates that change."""
    model = resnet(context.config.backbone, in_channels=context.in_channels,
                   n_classes=context.n_classes, stem=context.config.stem,
                   weights=context.config.weights)
    n_features = model.fc.in_features
    model.fc = nn.Identity()
    return model, n_features


def _local_pretrained_state(name: str, weights: str) -> dict:
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)[weights]
    except KeyError:
        raise ConfigError(f"unknown weights {weights!r} for {name}; try DEFAULT") from None
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
    if not path.is_file():
        raise ConfigError(f"pretrained weights {name} {weights} are not available locally: expected "
                          f"{path} (cvkit never downloads). Copy the file from {enum.url} there on a "
                          "machine with internet, or drop --weights to train from scratch")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise ConfigError(f"{path}: cannot load pretrained weights ({exc}); delete and copy it again") from None
