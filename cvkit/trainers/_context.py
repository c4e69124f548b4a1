"""What a trainer is told: the shared training recipe and the facts of one job."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

SELECTION_RULES = ("val_auc", "val_loss", "val_acc", "last")
CLASS_WEIGHTS = ("balanced", "none")
AUGMENTATIONS = ("flip", "none")


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe shared by the baseline and every variant of a run."""

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

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainContext:
    """Everything a plugin may look at when it builds and trains its model for one job."""

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
    # Called after every epoch with the epoch's record and a function that predicts with the
    # model as it is now; the runner uses it to record outer-test curves the trainer never sees.
    on_epoch: Callable[[dict, Callable], None] = field(default=lambda record, predict: None, repr=False)

    @property
    def n_extra(self) -> int:
        return len(self.extra_names)
