"""Built-in backbones: torchvision ResNets and DenseNet-121 (and timm models when timm is
installed), adapted to the data's channels and image size; for plugins, each as pooled features
(:func:`backbone`) or as the feature maps of its stages (:func:`feature_maps`)."""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlparse

import torch
from torch import nn

from ..errors import ConfigError

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
BACKBONES = RESNETS + ("densenet121",)
STEMS = ("standard", "small")
TORCHVISION_MODELS_URL = "https://download.pytorch.org/models/"
# Environment: set (e.g. to 1) to forbid any download (what --offline sets); and a URL that
# replaces TORCHVISION_MODELS_URL, for machines that reach a mirror but not download.pytorch.org.
OFFLINE = "CVKIT_OFFLINE"
WEIGHTS_MIRROR = "CVKIT_WEIGHTS_MIRROR"
DOWNLOAD_TIMEOUT_S = 60  # per network operation, not for the whole file


def is_backbone(name: str) -> bool:
    return name in BACKBONES or name.startswith("timm:")


def classifier(
    name: str, *, in_channels: int, n_classes: int, stem: str = "standard", weights: str | None = None
) -> nn.Module:
    """Any built-in backbone with a classifier for ``n_classes``: a ResNet, ``densenet121`` or
    ``timm:<model name>``. ``weights`` names torchvision weights (e.g. ``DEFAULT``, from the torch
    hub cache, downloaded there first when absent) or is the path of a local checkpoint (a state
    dict of the torchvision model)."""
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
    pretrained weights from the torch hub cache, downloaded there first as torchvision does
    (see :func:`fetch_pretrained`).
    """
    import torchvision

    if name not in RESNETS:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {', '.join(RESNETS)}")
    if stem not in STEMS:
        raise ConfigError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
    model = getattr(torchvision.models, name)(weights=None)
    if weights and not _is_path(weights):
        model.load_state_dict(_pretrained_state(name, weights))
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
        model.load_state_dict(_pretrained_state("densenet121", weights))
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


class Backbone(NamedTuple):
    """What :func:`backbone` returns: the network without its classifier and the width of the
    feature vector it outputs per image. A named pair, so that ``features, width = backbone(context)``
    reads it, and a plugin that uses the pair as a module gets an error that names it."""

    module: nn.Module
    width: int


def backbone(context) -> Backbone:
    """The run's baseline backbone without its classifier, and its feature width: the starting
    point of a plugin that changes only the head, so the comparison isolates that change.

    Returns the pair ``(module, width)``: ``module(x)`` maps images (N, C, H, W) to features
    (N, width). Write ``features, width = backbone(context)``; the pair itself is not a module."""
    model = classifier(
        context.config.backbone,
        in_channels=context.in_channels,
        n_classes=context.n_classes,
        stem=context.config.stem,
        weights=context.config.weights,
    )
    if hasattr(model, "reset_classifier"):  # timm
        model.reset_classifier(0)
        return Backbone(model, model.num_features)
    head = "fc" if hasattr(model, "fc") else "classifier"
    n_features = getattr(model, head).in_features
    setattr(model, head, nn.Identity())
    return Backbone(model, n_features)


class FeatureMaps(NamedTuple):
    """What :func:`feature_maps` returns: a module that maps images to the feature maps of the
    backbone's stages, and the channels of each map. A named pair, like :class:`Backbone`: write
    ``maps, widths = feature_maps(context)``."""

    module: nn.Module
    widths: tuple[int, ...]


class NoFeatureMaps(ConfigError):
    """The run's backbone cannot give a plugin its feature maps (the pre-flight names the plugin)."""


def feature_maps(context) -> FeatureMaps:
    """The run's baseline backbone (``--baseline``, ``--stem``, ``--weights``, as
    :func:`backbone` builds it) as the feature maps of its stages: the starting point of a plugin
    that pools or attends over positions, or mixes scales, on whatever backbone the run uses.

    Returns the pair ``(module, widths)``: ``module(x)`` maps images (N, C, H, W) to a list of
    feature maps (N, widths[i], H_i, W_i), one per stage, finest first; the last is the final
    stage, the map that the baseline's classifier pools (for torchvision's backbones, its global
    average pooling is what ``backbone(context)`` returns). ResNets give ``layer1`` to ``layer4``,
    ``densenet121`` its first three dense blocks and its final (normalised, rectified) map, a
    ``timm:`` model the stages of timm's ``forward_intermediates``. A backbone that cannot
    raises :class:`NoFeatureMaps`, which the pre-flight turns into one line before any job."""
    name = context.config.backbone
    model = classifier(
        name,
        in_channels=context.in_channels,
        n_classes=context.n_classes,
        stem=context.config.stem,
        weights=context.config.weights,
    )
    if name.startswith("timm:"):
        return _timm_feature_maps(name, model)
    stages = _TORCHVISION_STAGES.get("resnet" if name in RESNETS else name)
    if stages is None:
        raise NoFeatureMaps(f"backbone {name} has no feature maps in cvkit; {_FEATURE_MAPS_FIX}")
    from torchvision.models.feature_extraction import create_feature_extractor

    nodes, widths = stages(model)
    return FeatureMaps(_StageMaps(create_feature_extractor(model, nodes)), widths)


# What to do when a backbone gives no feature maps, for the error that says so.
_FEATURE_MAPS_FIX = (
    f"run the plugin with --baseline {', '.join(BACKBONES)} or a timm: model that has "
    "forward_intermediates, or build it on backbone(context), which every backbone gives"
)


def _resnet_stages(model) -> tuple[list[str], tuple[int, ...]]:
    layers = [f"layer{i}" for i in range(1, 5)]
    return layers, tuple(_last_norm(getattr(model, layer)).num_features for layer in layers)


def _densenet_stages(model) -> tuple[list[str], tuple[int, ...]]:
    # Each dense block's output (what its transition normalises), then the final map after norm5
    # and the ReLU of DenseNet.forward: the map its classifier pools.
    features = model.features
    blocks = [f"features.denseblock{i}" for i in range(1, 4)]
    widths = [getattr(features, f"transition{i}").norm.num_features for i in range(1, 4)]
    return [*blocks, "relu"], (*widths, features.norm5.num_features)


def _last_norm(stage: nn.Module) -> nn.BatchNorm2d:
    return [m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)][-1]


# torchvision backbone family -> the names of its stages' outputs (for create_feature_extractor)
# and their channels. A backbone added to BACKBONES gets feature maps by an entry here.
_TORCHVISION_STAGES = {"resnet": _resnet_stages, "densenet121": _densenet_stages}


class _StageMaps(nn.Module):
    """torchvision's feature extractor (a dict of named outputs) as a list of maps, finest first."""

    def __init__(self, extractor: nn.Module):
        super().__init__()
        self.extractor = extractor

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.extractor(x).values())


class _TimmStageMaps(nn.Module):
    """A timm model's ``forward_intermediates``: the map of every stage in its ``feature_info``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.model.forward_intermediates(x, intermediates_only=True))


def _timm_feature_maps(name: str, model: nn.Module) -> FeatureMaps:
    info = getattr(model, "feature_info", None)
    if not hasattr(model, "forward_intermediates") or not info:
        raise NoFeatureMaps(
            f"backbone {name} has no feature maps: timm gives this model no forward_intermediates; "
            + _FEATURE_MAPS_FIX
        )
    model.reset_classifier(0)
    return FeatureMaps(_TimmStageMaps(model), tuple(stage["num_chs"] for stage in info))


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


def ensure_pretrained(backbones, weights: str | None) -> list[Path]:
    """The torch hub cache files of torchvision's ``weights`` (e.g. ``DEFAULT``) for each of
    ``backbones``, downloaded first where absent; nothing for no weights, a checkpoint path or a
    timm backbone. A run calls it before training, so that a download happens once, in the
    foreground, and a failed one stops the run before any job."""
    if not weights or _is_path(weights):
        return []
    return [fetch_pretrained(name, weights) for name in dict.fromkeys(backbones) if name in BACKBONES]


def fetch_pretrained(name: str, weights: str) -> Path:
    """The torch hub cache file of torchvision's ``weights`` for backbone ``name``, downloaded as
    torchvision downloads it when absent: into ``torch.hub.get_dir()/checkpoints`` under its own
    name, with its progress bar, the SHA-256 prefix in the name checked, and no partial file left
    when it fails. ``CVKIT_OFFLINE`` forbids the download; ``CVKIT_WEIGHTS_MIRROR`` fetches from
    a copy of torchvision's model folder instead."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)[weights]
    except KeyError:
        raise ConfigError(f"unknown weights {weights!r} for {name}; try DEFAULT") from None
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(enum.url).path).name
    if path.is_file():
        return path
    url = _mirrored(enum.url)
    if os.environ.get(OFFLINE):
        raise ConfigError(
            f"pretrained weights {name} {weights} are not in the torch hub cache, and --offline "
            f"({OFFLINE}) forbids downloading them: put {url} at {path}, or drop --offline"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.write(f'Downloading: "{url}" to {path}\n')
    hash_prefix = torch.hub.HASH_REGEX.search(path.name)
    default_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a stalled connection fails instead of hanging
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix and hash_prefix.group(1), progress=True)
    except RuntimeError as exc:  # torch.hub: the content does not match the hash in the file's name
        raise ConfigError(f"{url}: {exc}; nothing was kept: download it again") from None
    except (OSError, ValueError) as exc:  # no network, no such file, a malformed mirror URL
        reason = exc.reason if type(exc) is urllib.error.URLError else exc
        raise ConfigError(
            f"could not download pretrained weights {name} {weights} from {url} ({reason}); nothing "
            f"was kept. Put the file at {path} yourself, or set {WEIGHTS_MIRROR} to a copy of "
            f"{TORCHVISION_MODELS_URL}, or drop --weights"
        ) from None
    finally:
        socket.setdefaulttimeout(default_timeout)
    return path


def _mirrored(url: str) -> str:
    mirror = os.environ.get(WEIGHTS_MIRROR)
    if mirror and url.startswith(TORCHVISION_MODELS_URL):
        return mirror.rstrip("/") + "/" + url[len(TORCHVISION_MODELS_URL) :]
    return url


def _pretrained_state(name: str, weights: str) -> dict:
    path = fetch_pretrained(name, weights)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise ConfigError(
            f"{path}: cannot load pretrained weights ({exc}); delete it, and the next run downloads it again"
        ) from None
