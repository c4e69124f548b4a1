"""The contracts between cvkit and a plugin: what a plugin file may define, and the trainer that
the runner trains for each job.

A plugin file defines exactly one of the three hooks in :data:`HOOKS` (each gets the job's
:class:`~cvkit.trainers.TrainContext`) and any of the attributes of :class:`PluginModule`.
``load_plugin`` reads them; docs/plugins.md shows them at work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..data import Dataset
    from ._context import TrainContext


@runtime_checkable
class Trainer(Protocol):
    """What the runner trains for one job: ``make_trainer(context)`` returns one, and cvkit wraps
    a ``build_model`` or ``build_estimator`` hook in one of its own.

    ``fit(train, val, context)``
        Train on ``train`` (a :class:`~cvkit.data.Dataset`), choosing checkpoints or stopping on
        ``val`` if it wants to; the outer test fold is never passed. Returns the trainer.
    ``predict_proba(data)``
        Class probabilities, shape ``(len(data), n_classes)``, rows summing to 1.

    The runner also reads these, when a trainer has them (after ``fit``):

    ``predict_proba_by_rule(data)`` and ``selected_rule_``
        Probabilities under every checkpoint-selection rule (``SELECTION_RULES``) and the rule
        chosen by ``--select``: the run keeps all of them for the selection analysis.
    ``selected_epoch_``
        The epoch whose checkpoint predicts.
    ``history_``
        One dict of training records per epoch.
    ``class_weight_``
        The loss's class weights, as a list.
    ``info_``
        A dict of what the trainer reports about itself (a nested search's choice), kept with the job.
    ``fit(train, val, context, stop_after=k)`` / ``fit(..., resume=state)``
        A pausable trainer (``Plugin.pausable``) trains its first ``k`` epochs, leaves its state
        in ``paused_``, and goes on from such a state in another process.
    """

    def fit(self, train: Dataset, val: Dataset, context: TrainContext) -> Any: ...

    def predict_proba(self, data: Dataset) -> np.ndarray: ...


class BuildModel(Protocol):
    """``build_model(context)``: a torch model, which cvkit's torch trainer trains. Its
    ``forward(x)`` gets a batch of images (N, C, H, W), scaled to [-1, 1], and returns logits
    (N, context.n_classes): two outputs for a binary task, never one. ``forward(x, extra)`` also
    gets the run's standardised extra features (N, context.n_extra), None without ``--extra``.
    ``cvkit.trainers.backbone(context)`` returns the pair ``(module, width)``: the baseline's
    network without its classifier, mapping images to features (N, width). Write
    ``features, width = backbone(context)``. ``cvkit.trainers.feature_maps(context)`` returns the
    pair ``(module, widths)``: the same network giving the list of its stages' feature maps
    (N, widths[i], H_i, W_i), finest first, on whatever backbone the run uses; a plugin takes
    feature maps from there, never from a network's attributes (``layer4`` exists on ResNets only).
    A network a plugin builds itself takes ``weights=context.config.weights`` as the baseline does."""

    def __call__(self, context: TrainContext) -> torch.nn.Module: ...


class BuildEstimator(Protocol):
    """``build_estimator(context)``: a scikit-learn classifier, fitted on what the plugin's
    ``ESTIMATOR_INPUTS`` names."""

    def __call__(self, context: TrainContext) -> Any: ...


class MakeTrainer(Protocol):
    """``make_trainer(context)``: a :class:`Trainer` of the plugin's own."""

    def __call__(self, context: TrainContext) -> Trainer: ...


# A plugin file defines exactly one of these (their contracts: the three classes above).
HOOKS = ("build_model", "build_estimator", "make_trainer")


class PluginModule(Protocol):
    """The attributes a plugin file may define besides its hook. Each is optional: the values
    here are what a plugin that leaves one out gets (``load_plugin`` reads them from here).

    ``HYPERPARAMS``
        Hyper-parameters and their defaults. They reach the plugin as ``context.hyperparams``
        (``--param MODEL.NAME=VALUE`` overrides one) and are part of every job's identity.
    ``SEARCH``
        Name -> list of values: a search space over ``HYPERPARAMS`` that ``--nested`` explores by
        inner cross-validation.
    ``DEPENDS``
        Paths relative to the plugin file (a checkpoint it loads, a vocabulary; a folder stands
        for every file in it) that are part of its identity: editing one trains its jobs again.
    ``ESTIMATOR_INPUTS``
        ``build_estimator`` only: what the estimator sees, ``"pixels"``, ``"extra"`` or ``"both"``.
    ``NEEDS_EXTRA``
        True for a plugin that cannot train without extra features (a fusion model): a run without
        ``--extra`` refuses it with one line before any training. An estimator whose
        ``ESTIMATOR_INPUTS`` names ``"extra"`` or ``"both"`` needs them without saying so.
    """

    # Never changed in place: every plugin without its own shares them.
    HYPERPARAMS: dict[str, Any] = {}
    SEARCH: dict[str, list] = {}
    DEPENDS: list[str] = []
    ESTIMATOR_INPUTS: str = "pixels"
    NEEDS_EXTRA: bool = False
