"""What a trainer is told: the shared training recipe and the facts of one job."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

from ..errors import OptionError
from ._features import IMPUTATIONS
from ._models import STEMS

SELECTION_RULES = ("val_auc", "val_loss", "val_acc", "last")
CLASS_WEIGHTS = ("balanced", "none")
AUGMENTATIONS = ("flip", "none")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe shared by the baseline and every variant of a run: every field is part
    of each job's key, so a changed recipe trains again.

    Parameters
    ----------
    epochs : int, default=5
        Training epochs of each job (at least 1).
    batch_size : int, default=32
        Images per training step (at least 2: batch normalisation needs two).
    lr : float, default=1e-3
        Adam's learning rate (a finite number above 0).
    weight_decay : float, default=0.0
        Adam's weight decay (a finite number of at least 0).
    select : {"val_auc", "val_loss", "val_acc", "last"}, default="val_auc"
        The checkpoint a job keeps: best on the validation part by that measure, or the last.
    class_weight : {"balanced", "none"}, default="balanced"
        Weigh the loss by inverse class frequency of each training part, or not.
    augment : {"flip", "none"}, default="flip"
        Random horizontal flips while training, or none.
    device : str, default="auto"
        Where jobs train: ``"auto"`` (a GPU when there is one), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"``. Part of the recipe because it changes the predictions' last bits.
    backbone : str, default="resnet18"
        The network of the baseline and of plugins built on it; ``evaluate`` sets it from its
        ``baseline`` when that names a backbone.
    stem : {"standard", "small"}, default="standard"
        ResNet stem: torchvision's, or a 3x3 stride-1 stem for small images.
    weights : str or None, default=None
        ``"DEFAULT"`` (torchvision's pretrained weights) or a checkpoint path; None: random.
    weights_digest : str or None, default=None
        Content hash of a local ``weights`` file, filled in by ``evaluate`` (a changed file never
        reuses old jobs).
    impute : {"none", "mean", "median"}, default="none"
        Fill missing extra-feature values with each training part's mean or median.
    precision : {"auto", "fp32", "bf16"}, default="auto"
        ``auto``: bf16 autocast on a GPU that supports it, fp32 elsewhere.
    drop_last : bool, default=False
        Drop each epoch's last incomplete batch (as ``DataLoader(drop_last=True)``). Without it a
        last batch of a single image is still dropped, because batch normalisation cannot train on
        one image; ``drop_last`` also avoids that batch-of-1 problem. Part of the job key only when
        True, so the keys of runs made before it existed stay the same.

    Raises
    ------
    OptionError
        A value out of its range or not one of its choices, naming the parameter
        (``batch_size must be at least 2, got 1``).
    """

    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    select: str = "val_auc"
    class_weight: str = "balanced"
    augment: str = "flip"
    device: str = "auto"
    backbone: str = "resnet18"
    stem: str = "standard"
    weights: str | None = None
    weights_digest: str | None = None  # content hash of a local --weights checkpoint: part of every job key
    impute: str = "none"
    precision: str = "auto"  # bf16 autocast on a GPU that supports it ("auto", "bf16") or "fp32"
    drop_last: bool = False  # in the job key only when True: older keys stay as they were

    def __post_init__(self):
        choices = dict(
            select=SELECTION_RULES,
            class_weight=CLASS_WEIGHTS,
            augment=AUGMENTATIONS,
            stem=STEMS,
            impute=IMPUTATIONS,
            precision=PRECISIONS,
        )
        for option, allowed in choices.items():
            value = getattr(self, option)
            if value not in allowed:
                raise OptionError(option, f"{value!r}: choose one of {', '.join(allowed)}")
        for option, low in (("epochs", 1), ("batch_size", 2)):
            value = getattr(self, option)
            if value < low:
                raise OptionError(option, f"must be at least {low}, got {value}")
        # Checked before a store exists: a NaN or negative rate would fail every job after it.
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise OptionError("lr", f"must be a finite number above 0, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise OptionError(
                "weight_decay", f"must be a finite number of at least 0, got {self.weight_decay}"
            )
        if not isinstance(self.drop_last, bool):
            raise OptionError("drop_last", f"must be True or False, got {self.drop_last!r}")
        device = self.device
        if not (device in ("auto", "cpu") or device.startswith("cuda")):
            raise OptionError("device", f"{device!r}: use auto, cpu, cuda or cuda:N")

    def as_dict(self) -> dict:
        record = asdict(self)
        if not self.drop_last:  # the field came later: a default recipe keeps its old key
            del record["drop_last"]
        return record


@dataclass
class TrainContext:
    """Everything a plugin may look at when it builds and trains its model for one job.

    ``build_model(context)``, ``build_estimator(context)`` and ``make_trainer(context)`` get one;
    so do a trainer's ``fit(train, val, context)``. Its attributes (docs/plugins.md has the same
    table; a test keeps the two in step with the code):

    ==============  ====================  ==========================================================
    attribute       type                  meaning
    ==============  ====================  ==========================================================
    n_classes       int                   number of classes; a model returns (N, n_classes)
                                          logits, two columns for a binary task
    in_channels     int                   channels of an image (1 for grey, 3 for colour)
    image_size      tuple[int, int]       (height, width) of every image, in pixels
    class_names     tuple[str, ...]       the class of each label index, in label order
    positive        int                   label index of the positive class
    extra_names     tuple[str, ...]       names of the extra (tabular) features; () without --extra
    n_extra         int                   len(extra_names): extra features per image
    hyperparams     dict                  this plugin's HYPERPARAMS, with --param overrides
    config          TrainConfig           the recipe shared by every model: backbone, stem,
                                          weights, epochs, batch_size, lr, ... (``config.backbone``)
    seed            int                   this job's training seed (cvkit's trainer seeds torch)
    device          str                   where the job trains: "cpu", "cuda", "cuda:1", "mps"
    cache_dir       str | None            folder of cached frozen-backbone features, or None
    on_epoch        Callable              on_epoch(record, predict), called by a trainer after
                                          each epoch; cvkit's own trainer calls it for you
    ==============  ====================  ==========================================================
    """

    config: TrainConfig
    n_classes: int
    in_channels: int
    image_size: tuple[int, int]
    class_names: tuple[str, ...]
    positive: int
    extra_names: tuple[str, ...]
    seed: int
    device: str
    hyperparams: dict = field(default_factory=dict)
    cache_dir: str | None = None  # where frozen-backbone features are kept (shared by sibling runs)
    # Called after every epoch with the epoch's record and a function that predicts with the
    # model as it is now; the runner uses it to record outer-test curves the trainer never sees.
    on_epoch: Callable[[dict, Callable], None] = field(default=None, repr=False)

    def __post_init__(self):
        if self.on_epoch is None:
            self.on_epoch = _ignore_epoch

    @property
    def n_extra(self) -> int:
        return len(self.extra_names)

    @classmethod
    def for_data(cls, dataset, config: TrainConfig, *, seed: int, device: str, **options) -> TrainContext:
        """The context of training on ``dataset`` (a :class:`~cvkit.data.Dataset`): its classes,
        channels, image size and extra features; ``options`` set the other fields."""
        return cls(
            config=config,
            n_classes=dataset.n_classes,
            in_channels=dataset.images.shape[1],
            image_size=tuple(dataset.images.shape[2:]),
            class_names=dataset.class_names,
            positive=dataset.positive,
            extra_names=dataset.extra_names,
            seed=seed,
            device=device,
            **options,
        )


def context_attributes() -> tuple[str, ...]:
    """The names a plugin can read on a ``TrainContext``: its fields and its properties."""
    properties = [name for name, value in vars(TrainContext).items() if isinstance(value, property)]
    return (*(f.name for f in fields(TrainContext)), *properties)


def config_attributes() -> tuple[str, ...]:
    """The names a plugin can read on ``context.config`` (a ``TrainConfig``)."""
    return tuple(f.name for f in fields(TrainConfig))


def _ignore_epoch(record, predict):
    """The default epoch listener (a module-level function, so contexts pickle to worker processes)."""
