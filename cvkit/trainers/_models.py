"""Built-in backbones: torchvision ResNets and DenseNet-121 (and timm models when timm is
installed), adapted to the data's channels and image size."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
BACKBONES = RESNETS + ("densenet121",)
STEMS = ("standard", "small")


def is_backbone(name: str) -> bool:
    return name in BACKBONES or name.startswith("timm:")


def classifier(
    name: str, *, in_channels: int, n_classes: int, stem: str = "standard", weights: str | None = None
) -> nn.Module:
    """Any built-in backbone with a classifier for ``n_classes``: a ResNet, ``densenet121`` or
    ``timm:<model name>``. ``weights`` names torchvision weights (e.g. ``DEFAULT``, from the local
    torch hub cache) or is the path of a local checkpoint (a state dict of the torchvision model)."""
    if stem not in STEMS:
        raise ConfigError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
    if name in RESNETS:
        return resnet(name, in_channels=in_channels, n_classes=n_classes, stem=stem, weights=weights)
    if name == "densenet121":
        return _densenet(in_channels, n_classes, stem, weights)
    if name.startswith("timm:"):
        return _timm(name[5:], in_channels, n_classes, weights)
    raise ConfigError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)} or timm:<name>")


def resnet(
    name: str, *, in_channels: int, n_classes: int, stem: str = "standard", weights: str | None = None
) -> nn.Module:
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
    if weights and not _is_path(weights):
        model.load_state_dict(_local_pretrained_state(name, weights))
    model.conv1 = _first_conv(model.conv1, in_channels, stem, pretrained=bool(weights))
    if stem == "small":
        model.maxpool = nn.Identity()
    model.fc = nn.Linear(model.fc.in_features, n_classes)
    if weights and _is_path(weights):
        _load_checkpoint(model, name, weights)
    return model


def _densenet(in_channels, n_classes, stem, weights):
    import torchvision

    model = torchvision.models.densenet121(weights=None)
    if weights and not _is_path(weights):
        model.load_state_dict(_local_pretrained_state("densenet121", weights))
    model.features.conv0 = _first_conv(model.features.conv0, in_channels, stem, pretrained=bool(weights))
    if stem == "small":
        model.features.pool0 = nn.Identity()
    model.classifier = nn.Linear(model.classifier.in_features, n_classes)
    if weights and _is_path(weights):
        _load_checkpoint(model, "densenet121", weights)
    return model


def _timm(name, in_channels, n_classes, weights):
    try:
        import timm
    except ImportError:
        raise ConfigError(f"backbone timm:{name} needs timm: pip install timm") from None
    try:
        model = timm.create_model(name, pretrained=False, num_classes=n_classes, in_chans=in_channels)
    except RuntimeError as exc:
        raise ConfigError(f"timm has no model {name!r} ({exc})") from None
    if weights:
        _load_checkpoint(model, f"timm:{name}", weights)
    return model


def _first_conv(conv: nn.Conv2d, in_channels: int, stem: str, pretrained: bool) -> nn.Module:
    """The stem convolution for ``in_channels``: 3x3 stride 1 for the small-image stem; otherwise
    the original shape, with pretrained colour filters averaged into the new channels."""
    if stem == "small":
        return nn.Conv2d(in_channels, conv.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    if in_channels == conv.in_channels:
        return conv
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=False,
    )
    if pretrained:  # keep what the pretrained filters see: average colour channels into grey
        with torch.no_grad():
            mean = conv.weight.mean(dim=1, keepdim=True)
            new.weight.copy_(mean.repeat(1, in_channels, 1, 1) * conv.in_channels / in_channels)
    return new


def backbone(context) -> tuple[nn.Module, int]:
    """The run's baseline backbone without its classifier, and its feature width: the starting
    point of a plugin that changes only the head, so the comparison isolates that change."""
    model = classifier(
        context.config.backbone,
        in_channels=context.in_channels,
        n_classes=context.n_classes,
        stem=context.config.stem,
        weights=context.config.weights,
    )
    if hasattr(model, "reset_classifier"):  # timm
        model.reset_classifier(0)
        return model, model.num_features
    head = "fc" if hasattr(model, "fc") else "classifier"
    n_features = getattr(model, head).in_features
    setattr(model, head, nn.Identity())
    return model, n_features


def _is_path(weights: str) -> bool:
    return "/" in weights or weights.endswith((".pt", ".pth", ".bin"))


def _load_checkpoint(model: nn.Module, name: str, path: str) -> None:
    """Load a local state dict into the adapted model. Tensors whose shape differs (a classifier
    for other classes, a stem for other channels) keep their fresh initialisation; everything
    else must be there."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--weights {path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise ConfigError(f"{path}: cannot load the checkpoint ({exc})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else {}
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    absent = [k for k in own if k not in state]
    if absent or len(fitting) < len(own) - 4:
        raise ConfigError(
            f"{path}: the checkpoint does not fit {name} (missing or mis-shaped: "
            f"{', '.join((absent or [k for k in own if k not in fitting])[:3])})"
        )
    model.load_state_dict(fitting, strict=False)


def _local_pretrained_state(name: str, weights: str) -> dict:
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)[weights]
    except KeyError:
        raise ConfigError(f"unknown weights {weights!r} for {name}; try DEFAULT") from None
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
    if not path.is_file():
        raise ConfigError(
            f"pretrained weights {name} {weights} are not available locally: expected "
            f"{path} (cvkit never downloads). Copy the file from {enum.url} there on a "
            "machine with internet, or drop --weights to train from scratch"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise ConfigError(
            f"{path}: cannot load pretrained weights ({exc}); delete and copy it again"
        ) from None
