"""Jobs: one training of one model on one split with one seed, identified by its content."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import PluginError
from ..trainers import Plugin, TrainConfig, TrainContext, job_process_state, plugin_frame


@dataclass(frozen=True)
class Job:
    model: str
    plugin: Plugin = field(repr=False)
    repeat: int
    fold: int
    seed_index: int
    seed: int
    key: str
    pausable_epochs: int = 0  # its epochs, when its trainer can pause between them; 0: it trains in one go
    threads: int = 1  # intra-op CPU threads it trains with: part of its key, they change the last bits


@dataclass
class PausedJob:
    """A job trained for its first epochs: the file that holds its trainer's state (the driver
    passes a path between workers, not a model's weights and Adam moments) and what the runner
    collected. Whoever ends the job removes the file with ``discard``."""

    job: Job
    path: str
    epoch_probs: dict[str, np.ndarray]
    duration_s: float

    def discard(self) -> None:
        Path(self.path).unlink(missing_ok=True)


@dataclass
class JobResult:
    """What a finished job hands back to the runner, which alone writes the store."""

    job: Job
    probs_by_rule: dict[str, np.ndarray]
    test_indices: np.ndarray
    selected_rule: str
    selected_epoch: int | None
    history: list[dict]
    duration_s: float
    environment: dict
    class_weight: list[float] | None = None
    info: dict | None = None  # what the trainer reports about itself, e.g. a nested search's choice
    holdout_probs: np.ndarray | None = None  # the fold model's predictions of the hold-out set
    holdout_indices: np.ndarray | None = None
    # The kept checkpoint's predictions of the job's inner validation part: what a threshold may
    # be chosen on (an operating point) without seeing the test fold.
    val_probs: np.ndarray | None = None
    val_indices: np.ndarray | None = None


def job_seed(master_seed: int, repeat: int, fold: int, seed_index: int) -> int:
    """The training seed of a (repeat, fold, seed index): the same for the baseline and every variant."""
    return int(np.random.SeedSequence([master_seed, repeat, fold, seed_index]).generate_state(1)[0])


def make_jobs(
    models: dict[str, Plugin],
    plan,
    *,
    n_seeds: int,
    master_seed: int,
    config: TrainConfig,
    data_fingerprints: dict[str, str],
    device: str,
    threads: int = 1,
) -> list[Job]:
    """Expand (model x repeat x fold x seed) into jobs, in model-major order, each keyed by its
    content: everything that can change its predictions.

    Parameters
    ----------
    models : dict of str to Plugin
        The run's models by name, the baseline first.
    plan : SplitPlan
        The splits every model shares.
    n_seeds : int
        Training seeds per split.
    master_seed : int
        The seed each job's training seed is derived from (``job_seed``).
    config : TrainConfig
        The training recipe, part of every key.
    data_fingerprints : dict of str to str
        Per model, the digest of the data its predictions depend on (the extra features only for
        a model that reads them).
    device : str
        Where the jobs train ("cpu", "cuda", "cuda:1"), part of every key.
    threads : int, default=1
        Intra-op threads each job trains with, part of every key: they change the predictions.

    Returns
    -------
    list of Job
        One job per model, split and seed.
    """
    jobs = []
    for name, plugin in models.items():
        for split in plan:
            for seed_index in range(n_seeds):
                seed = job_seed(master_seed, split.repeat, split.fold, seed_index)
                identity = dict(
                    plugin=plugin.digest,
                    hyperparams=plugin.hyperparams,
                    config=config.as_dict(),
                    data=data_fingerprints[name],
                    split=split.digest,
                    seed=seed,
                    device=device,
                    threads=threads,
                )
                key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
                jobs.append(
                    Job(
                        name,
                        plugin,
                        split.repeat,
                        split.fold,
                        seed_index,
                        seed,
                        key,
                        config.epochs if plugin.pausable else 0,
                        threads,
                    )
                )
    return jobs


@dataclass
class JobRunner:
    """Runs any job of one run: everything a job needs besides itself, pickled once per worker
    process. ``on_epoch(job, record)`` (set by the executor) hears every finished epoch;
    ``stop_after`` and ``resume`` train a pausable job in two parts (see ``run_job``)."""

    dataset: object
    plan: object
    context: TrainContext
    holdout: object = None
    paused_dir: str | None = None  # where paused jobs keep their state (the run folder's, see _claims)

    def __call__(
        self, job: Job, on_epoch=None, *, stop_after: int | None = None, resume: PausedJob | None = None
    ) -> JobResult | PausedJob:
        context = self.context
        if on_epoch is not None:
            context = replace(context, on_epoch=lambda record, predict: on_epoch(job, record))
        # Jobs share processes: each starts from the same torch settings, threads and seeds.
        with job_process_state(job.plugin.origin, job.threads, job.seed):
            return run_job(
                job,
                self.dataset,
                self.plan,
                context,
                self.holdout,
                stop_after=stop_after,
                resume=resume,
                paused_dir=self.paused_dir,
            )


def run_job(
    job: Job,
    dataset,
    plan,
    context: TrainContext,
    holdout=None,
    *,
    stop_after: int | None = None,
    resume: PausedJob | None = None,
    paused_dir: str | None = None,
) -> JobResult | PausedJob:
    """Train and predict one job (its test fold and, when given, the ``holdout`` set, whose
    samples are numbered after the data set's). Anything the plugin does wrong becomes a
    ``PluginError`` that names the plugin file and line. A pausable job may train in two parts:
    ``stop_after`` epochs give a ``PausedJob`` (its state saved in ``paused_dir``, by default the
    temporary folder), which ``resume`` (in any process) finishes with the result the job gives in
    one go."""
    split = plan.splits[job.repeat * plan.n_splits + job.fold]
    assert (split.repeat, split.fold) == (job.repeat, job.fold)
    train, val, test = (dataset.subset(idx) for idx in (split.train, split.val, split.test))
    epoch_probs = {}
    report_epoch = context.on_epoch

    def on_epoch(record, predict):
        # Outer-test predictions per epoch: stored apart, for learning curves and the
        # checkpoint-selection analysis; no decision of the trainer ever sees them.
        epoch_probs[f"epoch:{record['epoch']}"] = predict(test)
        report_epoch(record, predict)

    context = replace(context, seed=job.seed, hyperparams=job.plugin.hyperparams, on_epoch=on_epoch)
    started = time.perf_counter()
    parts = {}  # only a job trained in parts passes them: any trainer's fit(train, val, context) works
    if stop_after is not None:
        parts["stop_after"] = stop_after
    if resume is not None:
        epoch_probs.update(resume.epoch_probs)
        parts["resume"] = torch.load(resume.path, map_location=context.device, weights_only=True)
        started -= resume.duration_s
    try:
        trainer = job.plugin.make_trainer(context)
        trainer.fit(train, val, context, **parts)
        if stop_after is not None:
            return PausedJob(
                job, _save_state(trainer.paused_, paused_dir), epoch_probs, time.perf_counter() - started
            )
        if hasattr(trainer, "predict_proba_by_rule"):  # optional parts of the Trainer contract
            probs_by_rule = trainer.predict_proba_by_rule(test)
            selected = trainer.selected_rule_
        else:
            probs_by_rule = {"final": trainer.predict_proba(test)}
            selected = "final"
        holdout_probs = None if holdout is None else trainer.predict_proba(holdout)
        val_probs = trainer.predict_proba(val) if len(split.val) else None
    except PluginError:
        raise
    except SystemExit as exc:  # not an Exception: it would end the run, silently, with its code
        raise PluginError(
            f"{plugin_frame(exc, job.plugin)}: {job.model} called sys.exit({exc.code!r}) on repeat "
            f"{job.repeat}, fold {job.fold}; a plugin must raise an exception, never exit the process"
        ) from None
    except Exception as exc:
        where = plugin_frame(exc, job.plugin)
        hint = (
            "; lower --batch-size or --jobs (trainings at once)"
            if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            else ""
        )
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise PluginError(
            f"{where}: {job.model} failed on repeat {job.repeat}, fold {job.fold}: {detail}{hint}"
        ) from exc
    for rule, probs in probs_by_rule.items():
        probs_by_rule[rule] = check_probabilities(probs, len(test), dataset.n_classes, job.plugin)
    probs_by_rule.update(epoch_probs)
    if holdout_probs is not None:
        holdout_probs = check_probabilities(holdout_probs, len(holdout), dataset.n_classes, job.plugin)
    if val_probs is not None:
        val_probs = check_probabilities(val_probs, len(val), dataset.n_classes, job.plugin)
    return JobResult(
        job=job,
        probs_by_rule=probs_by_rule,
        test_indices=split.test,
        selected_rule=selected,
        selected_epoch=getattr(trainer, "selected_epoch_", None),
        history=list(getattr(trainer, "history_", [])),
        duration_s=time.perf_counter() - started,
        environment=environment(context.device),
        class_weight=getattr(trainer, "class_weight_", None),
        info=getattr(trainer, "info_", None),
        holdout_probs=holdout_probs,
        holdout_indices=None if holdout is None else np.arange(len(dataset), len(dataset) + len(holdout)),
        val_probs=val_probs,
        val_indices=None if val_probs is None else np.asarray(split.val),
    )


def _save_state(state: dict, folder: str | None) -> str:
    """Write a paused trainer's state to a new file in ``folder``; return its path."""
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
    handle, path = tempfile.mkstemp(prefix="cvkit-paused-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
    except BaseException:
        Path(path).unlink()
        raise
    return path


def check_probabilities(probs, n: int, n_classes: int, plugin: Plugin) -> np.ndarray:
    """A trainer's ``predict_proba`` output, or a ``PluginError`` saying what is wrong with it."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (n, n_classes):
        raise PluginError(
            f"{plugin.origin}: predict_proba returned shape {probs.shape}, expected "
            f"({n}, {n_classes}): one row per sample, one column per class"
        )
    if not np.isfinite(probs).all():
        raise PluginError(
            f"{plugin.origin}: predict_proba returned NaN or infinite probabilities; "
            "check the model for diverging training (learning rate, inputs)"
        )
    if (probs < 0).any() or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
        raise PluginError(
            f"{plugin.origin}: predict_proba rows must be probabilities summing to 1; "
            "apply softmax to the logits"
        )
    return probs


def environment(device: str) -> dict:
    import torch

    env = dict(
        python=platform.python_version(),
        torch=torch.__version__,
        numpy=np.__version__,
        platform=platform.platform(),
        threads=torch.get_num_threads(),
        cpus=os.cpu_count(),
        device=device,
    )
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def describe_failure(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))
