"""The pre-flight: each plugin's model built once and run on two samples before any job starts.

A plugin that breaks the contract (an attribute the context does not have, one output for two
classes, ``backbone()``'s pair used as a module, a ``forward`` that cannot take what cvkit passes,
``feature_maps()`` on a backbone that has none) would otherwise fail inside the first job, after
the run folder exists and maybe after other jobs trained. Here it fails in about a second with
one line that names the plugin file and the fix. The check runs the trainer's own build path
(``TorchTrainer.preflight``), so what passes here is what training builds; it runs on the CPU, in
a forked child process that leaves the caller as it was.
"""

from __future__ import annotations

import difflib
import multiprocessing
import os
import re
import traceback
from dataclasses import dataclass, replace

import torch

from ..errors import ConfigError, CvkitError, PluginError
from ._context import TrainConfig, TrainContext, config_attributes, context_attributes
from ._models import Backbone, FeatureMaps
from ._plugin import Plugin, plugin_frame
from ._search import candidates
from ._torch import TorchTrainer

CONTRACT = "docs/plugins.md"  # where the contract is written down, named in the hints


def preflight(plugin: Plugin, context: TrainContext, sample) -> bool:
    """Build ``plugin``'s model as training would (once per candidate of its search space when it
    is searched), run it on ``sample`` (two samples of the run's data, extra features included)
    and raise a one-line ``PluginError`` when it cannot train: an error in building or running it,
    logits that are not (len(sample), n_classes), or a plugin that ends its process. Plugins that
    cvkit's torch trainer does not train (scikit-learn estimators, own trainers) are only checked
    for the extra features they need.

    Returns whether the model's predictions depend on the extra features (so that its job keys
    must name them): for a model cvkit's trainer builds, whether its ``forward`` takes them or its
    build reads them (the same seed builds other weights with and without them); otherwise what
    the plugin says (``Plugin.reads_extra``).

    The check runs in a forked child of the calling process, so that nothing the plugin does
    there reaches the caller: ``sys.exit`` or ``os._exit`` in the plugin, a thread it leaves
    running, draws from the global random generators, or torch's thread pool started in a process
    that forks its workers later (a forked child deadlocks in its first parallel region then)."""
    if plugin.needs_extra and context.n_extra == 0:
        raise PluginError(
            f"{plugin.origin}: {plugin.name} needs extra features: pass --extra FILE.csv or "
            "--extra handcrafted"
        )
    if plugin.build_model is None:
        return plugin.reads_extra is not False and context.n_extra > 0
    fork = multiprocessing.get_context("fork")
    receiving, sending = fork.Pipe(duplex=False)
    child = fork.Process(target=_check_in_child, args=(sending, plugin, context, sample), daemon=True)
    child.start()
    sending.close()
    try:
        outcome = receiving.recv()
    except EOFError:  # the child ended without a word: the plugin ended its process
        outcome = None
    finally:
        receiving.close()
        child.join()
    if outcome is None:
        raise PluginError(
            f"{plugin.origin}: {plugin.name} ended the process (exit code {child.exitcode}) while its model "
            "was built and run on 2 images, before any job started; a plugin returns or raises, it never "
            "exits the process"
        )
    if outcome.message is not None:
        raise PluginError(outcome.message) from _ChildTraceback(outcome.traceback)  # --debug shows it
    return outcome.reads_extra


@dataclass(frozen=True)
class _Outcome:
    message: str | None  # the one line for the user; None when the plugin passed
    traceback: str = ""
    reads_extra: bool = True  # whether the model's predictions depend on the extra features


class _ChildTraceback(Exception):
    """The traceback of the pre-flight's child process, as text (``--debug`` shows it)."""


def _check_in_child(sending, plugin: Plugin, context: TrainContext, sample) -> None:
    """The pre-flight's child: the check, its outcome sent to the parent, then the process ends at
    once (``os._exit``: neither waiting for threads the plugin started nor running exit hooks)."""
    torch.set_num_threads(1)  # the parent may have started torch's thread pool: one thread is safe
    outcome = None
    try:
        outcome = _Outcome(None, reads_extra=_check(plugin, context, sample))
    except CvkitError as exc:
        outcome = _Outcome(str(exc), "".join(traceback.format_exception(exc.__cause__ or exc)))
    except SystemExit as exc:
        outcome = _Outcome(
            f"{plugin.origin}: {plugin.name} called sys.exit({exc.code!r}) while its model was built and run "
            "on 2 images, before any job started; a plugin returns or raises, it never exits the process",
            traceback.format_exc(),
        )
    except Exception as exc:  # not the plugin's building or running: say what it was all the same
        outcome = _Outcome(
            f"{plugin.origin}: {plugin.name}: checking the model before any job failed: "
            f"{type(exc).__name__}: {' '.join(str(exc).split())}",
            traceback.format_exc(),
        )
    except KeyboardInterrupt:  # Ctrl-C reaches the parent too, which stops the command
        pass
    finally:
        if outcome is not None:
            sending.send(outcome)
        os._exit(0)


def _check(plugin: Plugin, context: TrainContext, sample) -> bool:
    """The checks in the child; whether any setting's model reads the extra features."""
    reads_extra = False
    settings = [plugin.hyperparams]
    if plugin.nested_args is not None and plugin.search:
        settings = [{**plugin.hyperparams, **candidate} for candidate in candidates(plugin.search)]
    for hyperparams in settings:
        # On the CPU whatever the run's device: two samples are cheap there, and no GPU memory is
        # taken nor CUDA initialised before the workers start. The context says so, for a plugin
        # that places tensors on context.device.
        trial = replace(context, hyperparams=hyperparams, device="cpu")
        trainer = TorchTrainer(plugin.build_model)
        try:
            logits = trainer.preflight(sample, trial)
        except ConfigError as exc:  # a backbone without feature maps, --weights a member cannot load
            if plugin.path is None:  # a built-in model: the option alone is at fault
                raise
            raise type(exc)(f"{plugin_frame(exc, plugin)}: {plugin.name}: {exc}") from exc
        except CvkitError:
            raise
        except Exception as exc:
            raise PluginError(_explain(exc, plugin, trial, trainer)) from exc
        _check_logits(logits, plugin, trial, len(sample))
        reads_extra = reads_extra or trainer.takes_extra_ or _build_reads_extra(plugin, trial)
    return reads_extra


def _build_reads_extra(plugin: Plugin, context: TrainContext) -> bool:
    """Whether ``build_model`` builds another model (other parameters, other initial values under
    one seed) when the run has no extra features: a model sized or initialised by them depends on
    them even when its ``forward`` never sees them."""
    if context.n_extra == 0:
        return False

    def built(trial: TrainContext) -> dict:
        torch.manual_seed(0)
        return plugin.build_model(trial).state_dict()

    try:
        without = built(replace(context, extra_names=()))
    except Exception:  # it cannot be built without them
        return True
    with_extra = built(context)
    return without.keys() != with_extra.keys() or any(
        without[k].shape != v.shape or not torch.equal(without[k], v) for k, v in with_extra.items()
    )


def _check_logits(logits: torch.Tensor, plugin: Plugin, context: TrainContext, n: int) -> None:
    expected = (n, context.n_classes)
    shape = tuple(logits.shape)
    if shape == expected:
        return
    fix = "end the model with nn.Linear(width, context.n_classes)"
    if context.n_classes == 2 and shape in ((n,), (n, 1)):
        raise PluginError(
            f"{plugin.origin}: {plugin.name} returns one output per image, but a binary head needs two "
            f"outputs, one logit per class (n_classes = context.n_classes = 2): {fix}"
        )
    raise PluginError(
        f"{plugin.origin}: {plugin.name} returns logits of shape {shape} for {n} images; expected "
        f"{expected}, one row per image and one logit per class (n_classes = context.n_classes = "
        f"{context.n_classes}): {fix}"
    )


def _explain(exc: Exception, plugin: Plugin, context: TrainContext, trainer: TorchTrainer) -> str:
    """One line for what went wrong while building or running the model, with the fix."""
    where = f"{plugin_frame(exc, plugin)}: {plugin.name}"
    obj = getattr(exc, "obj", None) if isinstance(exc, AttributeError) else None
    if isinstance(obj, (TrainContext, TrainConfig)):
        if isinstance(obj, TrainContext):
            owner, names = "context", context_attributes()
        else:
            owner, names = "context.config", config_attributes()
        close = difflib.get_close_matches(exc.name, names, n=1)
        hint = f"did you mean {owner}.{close[0]}?" if close else f"it has: {', '.join(names)}"
        return f"{where}: {owner} has no attribute {exc.name!r}; {hint} (all are listed in {CONTRACT})"
    message = " ".join(str(exc).split())
    if isinstance(obj, FeatureMaps) or (isinstance(exc, TypeError) and "'FeatureMaps' object" in message):
        return (
            f"{where}: feature_maps(context) returns a pair (module, widths), not a module: write "
            f"`maps, widths = feature_maps(context)` and use `maps` as the network ({type(exc).__name__}: "
            f"{message})"
        )
    if isinstance(obj, Backbone) or (isinstance(exc, TypeError) and _names_backbone(message)):
        return (
            f"{where}: backbone(context) returns a pair (module, width), not a module: write "
            f"`features, width = backbone(context)` and use `features` as the network ({type(exc).__name__}: "
            f"{message})"
        )
    if isinstance(exc, AttributeError) and exc.name == "float" and not isinstance(obj, torch.Tensor):
        return (
            f"{where}: forward returns a {type(obj).__name__}, not a tensor of logits (N, n_classes); "
            "return the logits alone"
        )
    if isinstance(exc, TypeError) and "forward()" in message:
        return (
            f"{where}: {message}; cvkit calls forward(x) with images (N, C, H, W) or, when forward "
            "takes two arguments, forward(x, extra) with the extra features (N, context.n_extra)"
        )
    widths = _MISMATCHED_WIDTHS.search(message)
    if widths:
        return (
            f"{where}: a layer expects {widths['expected']} inputs but gets {widths['got']} "
            f"({type(exc).__name__}: {message}); size the head from the width the backbone returns: "
            "`features, width = backbone(context)`, then nn.Linear(width, ...) (or width + "
            "context.n_extra when the extra features are concatenated)"
        )
    if getattr(trainer, "takes_extra_", False) and context.n_extra == 0:
        return (
            f"{where}: forward(x, extra) gets extra=None because this run has no extra features "
            f"({type(exc).__name__}: {message}); pass --extra FILE.csv (or --extra handcrafted), or "
            "write forward(self, x) to use the images alone"
        )
    return (
        f"{where}: building the model and running it on 2 images failed before any job started: "
        f"{type(exc).__name__}: {message}"
    )


# torch's message when a Linear layer's in_features differ from the width it is given.
_MISMATCHED_WIDTHS = re.compile(
    r"mat1 and mat2 shapes cannot be multiplied \(\d+x(?P<got>\d+) and (?P<expected>\d+)x\d+\)"
)


def _names_backbone(message: str) -> bool:
    """Whether a TypeError's message is about ``backbone()``'s pair used where a module belongs."""
    return "'Backbone' object" in message or f"{Backbone.__module__}.Backbone" in message
