"""cvkit's torch trainer: the training recipe every ``build_model`` plugin and the baseline share.

The whole fold lives in memory as tensors (on the GPU, copied there once per job); batches are
index slices and augmentation is applied to the batch tensor, so no per-sample Python runs in the
training loop. Adam is the fused single-kernel implementation (the same update rule as the
hand-written loop's default Adam, a third less time per step on CPU), convolutions with a 1x1
output use an exact shortcut and Adam trains only the weights such a convolution can reach
(``_kernels``), and on a GPU the model runs channels-last with bf16 autocast when ``precision``
allows it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from ._context import SELECTION_RULES, TrainContext
from ._features import fit_extra_transform
from ._frozen import FeatureCache, FrozenFeatures
from ._kernels import single_tap_parameters, use_exact_shortcuts

PREDICT_BATCH = 512


class TorchTrainer:
    """Trains ``build_model(context)`` with the run's recipe and keeps one checkpoint per
    selection rule (``val_auc``, ``val_loss``, ``val_acc``, ``last``), chosen on validation only."""

    def __init__(self, build_model):
        self.build_model = build_model

    def fit(
        self, train, val, context: TrainContext, *, stop_after: int | None = None, resume: dict | None = None
    ):
        """Train on ``train``, choosing checkpoints on ``val``. ``stop_after`` pauses after that
        many epochs and leaves in ``paused_`` all the state training depends on (weights, Adam,
        random generators, history, checkpoints); ``resume`` goes on from such a state, in a new
        trainer of another process if need be. Trained in parts, a job gives the predictions it
        gives in one go, bit for bit."""
        config = context.config
        device = torch.device(context.device)
        torch.manual_seed(context.seed)
        generator = torch.Generator().manual_seed(context.seed)
        if device.type == "cuda":
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False

        model = self._build(context, device, lambda: _feature_cache(context.cache_dir))
        self.extra_transform_ = fit_extra_transform(train.extra, config.impute)

        x_train, e_train = self._tensors(train)
        mirrored = None
        if config.augment == "flip" and self.frozen_ is not None:
            mirrored = self._tensors(train, mirrored=True)[0]
        y_train = torch.as_tensor(train.labels, device=device)
        x_val, e_val = self._tensors(val)
        weight = None
        if config.class_weight == "balanced":
            counts = np.bincount(train.labels, minlength=context.n_classes).astype(np.float64)
            weight = torch.tensor(
                len(train) / (context.n_classes * np.maximum(counts, 1)), dtype=torch.float32, device=device
            )
        self.class_weight_ = None if weight is None else weight.tolist()
        loss_fn = nn.CrossEntropyLoss(weight=weight)
        params = single_tap_parameters(
            model, lambda: self._forward(model, x_train[:2], None if e_train is None else e_train[:2])
        )
        fused = all(
            p.dtype in (torch.float32, torch.float64) and p.device.type in ("cpu", "cuda") for p in params
        )
        optimizer = torch.optim.Adam(
            params, lr=config.lr, weight_decay=config.weight_decay, fused=fused or None
        )

        self.history_ = []
        self.inputs_ = (None, None, None)  # (data, images or features, extra) last predicted
        self.epoch_predictions_ = []  # (epoch, data, probabilities) predicted for the runner
        best = {rule: (-math.inf, -1, None) for rule in SELECTION_RULES}
        first = 0
        if resume is not None:
            first, best = self._restore(resume, model, optimizer, generator)
        for epoch in range(first, config.epochs):
            model.train()
            order = torch.randperm(len(train), generator=generator).to(device)
            total, seen = 0.0, 0
            for batch in _batches(order, config.batch_size, drop_last=config.drop_last):
                xb = x_train[batch]
                if config.augment == "flip":
                    flip = (torch.rand(len(batch), generator=generator) < 0.5).to(device)
                    flip = flip.view(-1, *[1] * (xb.dim() - 1))
                    xb = torch.where(flip, xb.flip(-1) if mirrored is None else mirrored[batch], xb)
                optimizer.zero_grad(set_to_none=True)
                logits = self._forward(model, xb, None if e_train is None else e_train[batch])
                loss = loss_fn(logits, y_train[batch])
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
                seen += len(batch)

            val_logits = self._logits(model, x_val, e_val)
            if not (math.isfinite(total) and torch.isfinite(val_logits).all()):
                raise FloatingPointError(
                    f"the model's loss or outputs are NaN or infinite at epoch {epoch + 1}; "
                    "training diverged (try a lower --lr) or the model computes NaN"
                )
            val_probs = torch.softmax(val_logits, dim=1).cpu().numpy().astype(np.float64)
            y_val = torch.as_tensor(val.labels, device=device)
            record = dict(
                epoch=epoch + 1,
                train_loss=total / max(seen, 1),
                val_loss=float(loss_fn(val_logits, y_val)),
                val_acc=float(np.mean(val_probs.argmax(1) == val.labels)),
                val_auc=_auc(val.labels, val_probs, context.positive),
            )
            self.history_.append(record)
            context.on_epoch(
                record,
                lambda data, done=epoch + 1: self._remember(done, data, self._probabilities(model, data)),
            )
            scores = dict(
                val_auc=record["val_auc"],
                val_loss=-record["val_loss"],
                val_acc=record["val_acc"],
                last=float(epoch),
            )
            for rule, score in scores.items():
                if score > best[rule][0]:  # strict: ties keep the earlier epoch
                    best[rule] = (score, epoch + 1, None)
            changed = {rule for rule in SELECTION_RULES if best[rule][1] == epoch + 1}
            if changed:
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                for rule in changed:
                    best[rule] = (best[rule][0], epoch + 1, state)
            if epoch + 1 == stop_after and stop_after < config.epochs:
                # The model as it is now is the "last" checkpoint, taken just above.
                self.paused_ = dict(
                    epoch=epoch + 1,
                    optimizer=optimizer.state_dict(),
                    generator=generator.get_state(),
                    rng=_rng_state(device),
                    history=self.history_,
                    best=best,
                )
                return self

        self.model_ = model
        # A rule that never scored (a one-class validation part has no AUC) falls back to the last epoch.
        self.checkpoints_ = {
            rule: (b[1], b[2]) if b[2] is not None else (best["last"][1], best["last"][2])
            for rule, b in best.items()
        }
        self.selected_rule_ = config.select
        self.selected_epoch_ = self.checkpoints_[config.select][0]
        fallen_back = sorted(rule for rule, b in best.items() if b[2] is None)
        if fallen_back:  # kept with the job, so that the report can say which jobs fell back
            self.info_ = dict(checkpoint_fallback={rule: "last" for rule in fallen_back})
        return self

    def preflight(self, sample, context: TrainContext) -> torch.Tensor:
        """The logits that the model training builds gives for ``sample`` (a couple of samples of the
        run's data) in training mode, on ``context.device``, without gradients: what the first
        training step computes, so that a model which cannot train fails here, before any job
        starts. It draws from the global random generators (building a model does): the pre-flight
        runs it in a child process, which leaves the caller's as they were."""
        device = torch.device(context.device)
        model = self._build(context, device, lambda: FeatureCache(None))
        self.extra_transform_ = fit_extra_transform(sample.extra, context.config.impute)
        x, extra = self._tensors(sample)
        model.train()
        with torch.no_grad():
            return self._forward(model, x, extra)

    def _build(self, context: TrainContext, device, feature_cache) -> nn.Module:
        """``build_model(context)`` on ``device``, as the trainer runs it: the model whose
        parameters train (a frozen backbone's head), with how to feed it (``takes_extra_``,
        ``frozen_`` and its ``feature_cache()``, ``autocast_``, ``device_``) set."""
        model = self.build_model(context)
        if not isinstance(model, nn.Module):
            raise TypeError(f"build_model must return a torch.nn.Module, got {type(model).__name__}")
        self.autocast_ = _autocast(device, context.config.precision)
        model = use_exact_shortcuts(model).to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        # A frozen backbone's features are computed once and the head trains on them.
        self.frozen_ = model if isinstance(model, FrozenFeatures) else None
        if self.frozen_ is not None:
            model = self.frozen_.head
            self.takes_extra_ = self.frozen_.head_takes_extra
            self.features_ = feature_cache()
        else:
            self.takes_extra_ = len(inspect.signature(model.forward).parameters) >= 2
        self.device_ = device
        return model

    def _restore(self, paused, model, optimizer, generator):
        """Put the state ``fit`` paused with into this trainer's fresh model and optimizer; return
        the epochs already trained and the checkpoints chosen so far."""
        model.load_state_dict(paused["best"]["last"][2])
        optimizer.load_state_dict(paused["optimizer"])
        generator.set_state(paused["generator"])
        _set_rng_state(paused["rng"], self.device_)
        self.history_ = list(paused["history"])
        return paused["epoch"], dict(paused["best"])

    def predict_proba(self, data) -> np.ndarray:
        return self.predict_proba_by_rule(data)[self.selected_rule_]

    def predict_proba_by_rule(self, data) -> dict[str, np.ndarray]:
        """Test probabilities under the checkpoint each selection rule picked."""
        out = {}
        for rule, (epoch, state) in self.checkpoints_.items():
            # A checkpoint's predictions of data already predicted at its epoch are those
            # predictions: the same weights, in eval mode, on the same batch.
            known = [probs for e, d, probs in self.epoch_predictions_ if e == epoch and d is data]
            if known:
                out[rule] = known[0]
            else:
                self.model_.load_state_dict(state)
                out[rule] = self._probabilities(self.model_, data)
        self.model_.load_state_dict(self.checkpoints_[self.selected_rule_][1])
        return out

    def _remember(self, epoch, data, probs):
        self.epoch_predictions_.append((epoch, data, probs))
        return probs

    def _probabilities(self, model, data) -> np.ndarray:
        # The outer test part is predicted after every epoch: prepare its inputs once per job
        # (for a frozen backbone that is a weights digest and an image hash per sample).
        if self.inputs_[0] is not data:
            self.inputs_ = (data, *self._tensors(data))
        _, x, e = self.inputs_
        return torch.softmax(self._logits(model, x, e), dim=1).cpu().numpy().astype(np.float64)

    def _tensors(self, data, mirrored=False):
        """The model's inputs for ``data``: scaled images, or a frozen backbone's features (of the
        mirrored images when ``mirrored``); and the transformed extra features."""
        if self.frozen_ is not None:
            images = np.ascontiguousarray(data.images[..., ::-1]) if mirrored else data.images
            x = self.features_.features(self.frozen_.backbone, images, self.device_, self._scale)
        else:
            x = torch.as_tensor(data.images)
            if self.device_.type == "cuda":  # one pinned, asynchronous copy of the whole part per job
                x = x.pin_memory().to(self.device_, non_blocking=True)
            x = self._scale(x)
        if data.extra is None:
            return x, None
        e = self.extra_transform_.transform(data.extra)
        return x, torch.as_tensor(e, dtype=torch.float32, device=self.device_)

    def _scale(self, images):
        """uint8 images -> the float inputs every model sees, in [-1, 1]."""
        x = images.float().div_(127.5).sub_(1.0)
        return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x

    def _forward(self, model, x, extra):
        with self.autocast_:
            logits = model(x, extra) if self.takes_extra_ else model(x)
        return logits.float()

    @torch.no_grad()
    def _logits(self, model, x, extra):
        model.eval()
        parts = [
            self._forward(
                model, x[i : i + PREDICT_BATCH], None if extra is None else extra[i : i + PREDICT_BATCH]
            )
            for i in range(0, len(x), PREDICT_BATCH)
        ]
        return torch.cat(parts).float()


def _rng_state(device) -> dict:
    """The global generators' states (dropout draws from them)."""
    state = dict(cpu=torch.get_rng_state())
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@functools.cache
def _feature_cache(directory) -> FeatureCache:
    """One feature cache per folder and process, kept across the jobs a worker runs."""
    return FeatureCache(directory)


def _autocast(device, precision):
    """bf16 autocast on a GPU that supports it (``precision`` ``auto`` or ``bf16``), else nothing:
    on CPU bf16 is slower and changes results for no gain."""
    if precision == "fp32" or device.type != "cuda":
        return contextlib.nullcontext()
    if precision == "auto" and not torch.cuda.is_bf16_supported():
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)


def _batches(order, batch_size, *, drop_last=False):
    """Index batches of one epoch; a last batch of a single sample is dropped, because BatchNorm
    cannot train on it (as the hand-written loop does), and with ``drop_last`` any incomplete last
    batch (unless it would be the only one)."""
    n = len(order)
    stop = n - 1 if n % batch_size == 1 and n > 1 else n
    if drop_last and n >= batch_size:
        stop = n - n % batch_size
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def _auc(labels, probs, positive):
    """Validation AUC of the positive class (one-vs-rest for several classes); NaN when the
    validation part holds a single class, so that the rule never selects on it."""
    if len(np.unique(labels)) < 2:
        return math.nan
    if probs.shape[1] == 2:
        return float(roc_auc_score(labels == positive, probs[:, positive]))
    return float(roc_auc_score(labels, probs, multi_class="ovr"))
