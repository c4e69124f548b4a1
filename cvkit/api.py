"""``cvkit.evaluate``: data -> split plan -> jobs -> store -> results, the whole pipeline in one call."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from ._version import __version__
from .data import (
    THUMBNAILS_NAME,
    Data,
    Dataset,
    DuplicatePair,
    check_missing,
    drop_duplicates,
    find_duplicates,
    load_data,
    with_extra,
    write_thumbnails,
)
from .errors import ConfigError, OptionError
from .multiverse import GridResults, default_grid_dir, evaluate_grid, not_sequential, parse_vary
from .planning import AnalysisPlan, SequentialRule, sequential_looks
from .report import NotebookProgress
from .results import Results
from .runner import (
    Execution,
    ExecutorSettings,
    JobClaims,
    JobProgress,
    JobRunner,
    RunCounts,
    Store,
    Verification,
    check_writable,
    choose_concurrency,
    make_executor,
    make_jobs,
    run_jobs,
    store_bytes,
    verify_jobs,
)
from .splits import Design, SplitPlan, make_plan
from .trainers import (
    SELECTION_RULES,
    TrainConfig,
    TrainContext,
    classifier,
    ensure_pretrained,
    is_backbone,
    load_plugin,
    preflight,
)


def _keeps_global_state(function):
    """Run ``function`` and put back the process-wide state that training changes: the global
    generators of Python, NumPy and torch (a job seeds torch's; a plugin may seed the others),
    torch's thread count, default dtype and determinism flags. A notebook's own random streams
    and settings go on as if cvkit had not run."""

    @functools.wraps(function)
    def kept(*args, **kwargs):
        import random

        import torch

        python_rng, numpy_rng = random.getstate(), np.random.get_state()
        dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
        deterministic = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        cuda = range(torch.cuda.device_count()) if torch.cuda.is_initialized() else []
        try:
            with torch.random.fork_rng(devices=cuda):
                return function(*args, **kwargs)
        finally:
            random.setstate(python_rng)
            np.random.set_state(numpy_rng)
            torch.set_default_dtype(dtype)
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn

    return kept


@_keeps_global_state
def evaluate(
    variants=(),
    *,
    baseline: str = TrainConfig.backbone,
    data: Data | Dataset | str | os.PathLike | None = None,
    design: Design | None = None,
    recipe: TrainConfig | None = None,
    execution: Execution | None = None,
    hyperparams: dict | None = None,
    out=None,
    reports_dir="reports",
    progress: JobProgress | NotebookProgress | bool | None = None,
    command: str | None = None,
    caveats=(),
    registration: AnalysisPlan | None = None,
    until_decided: SequentialRule | None = None,
    vary: dict | list | str | None = None,
    **shortcuts,
) -> Results | GridResults:
    """Train the baseline and every variant on the same splits with the same seeds.

    Finished jobs already in ``out`` are not trained again; identical jobs in sibling run folders
    under the same reports folder are reused. Drivers started on the same ``out`` share its jobs
    (each claims a job before training it). Duplicate images (exact, or equal average hashes
    confirmed on the pixels) are reported before training. Every warning shown meanwhile is kept
    with the run as a caveat that its reports list. Global random generators, matplotlib and torch
    settings are left as they were.

    Parameters
    ----------
    variants : str, path or sequence of them, default=()
        Plugin files or built-in model names, each compared with the baseline.
    baseline : str, default="resnet18"
        The reference model: a built-in backbone (``resnet18``, ``densenet121``, ``timm:NAME``
        ...; it becomes ``recipe.backbone``), another built-in model or a plugin file.
    data : Data, Dataset, str, path or None, default=None
        The run's :class:`~cvkit.data.Data`; a :class:`~cvkit.data.Dataset` or a spec for
        :func:`~cvkit.data.load_data` stands for ``Data(source=data)``; None for ``Data()``
        (the demo data).
    design : Design or None, default=None
        The cross-validation :class:`~cvkit.splits.Design`; None for ``Design()``.
    recipe : TrainConfig or None, default=None
        The training recipe (:class:`~cvkit.trainers.TrainConfig`) shared by every model; None
        for ``TrainConfig()``. Its ``backbone`` follows ``baseline``.
    execution : Execution or None, default=None
        How the jobs run (:class:`~cvkit.runner.Execution`): executor, jobs side by side,
        threads, retries, Ray's settings; None for ``Execution()``. Every executor gives the same
        predictions.
    hyperparams : dict or None, default=None
        Model name -> its hyper-parameter overrides (``{"mlp_head": {"hidden": 100}}``).
    out : str, path or None, default=None
        The run folder; None: ``reports_dir/<models>-<data>-<hash>`` (same settings, same
        folder: a rerun resumes).
    reports_dir : str or path, default="reports"
        Where default run folders go.
    progress : JobProgress, NotebookProgress, bool or None, default=None
        None or True shows the jobs and epochs where someone can see them (a line updated in place
        in a Jupyter notebook, bars on a terminal), False nowhere; or a display of your own.
    command : str or None, default=None
        The command line shown in the reports.
    caveats : sequence of str, default=()
        Warnings raised earlier about this run's data (e.g. while loading it), listed in its
        reports.
    registration : AnalysisPlan or None, default=None
        The pre-registered analysis plan this run follows
        (:func:`~cvkit.planning.read_analysis_plan`): its design and models must be the ones asked
        for; it is stored with the run when the run starts, and every report then names it.
    until_decided : SequentialRule or None, default=None
        A sequential design (:class:`~cvkit.planning.SequentialRule`): repeats run in stages up
        to its ``max_repeats`` (which ``design.repeats`` must equal), and after each stage from
        the second on the rule looks at every undecided variant; the run stops when each is
        decided.
    vary : dict, list of str, str or None, default=None
        A grid of training recipes (``{"batch_size": [16, 32], "drop_last": [True, False]}``, or
        ``["batch_size=16,32", "drop_last=true,false"]`` as ``--vary`` takes them): the whole run
        is made once per cell (:func:`~cvkit.multiverse.evaluate_grid`), each cell a run folder
        under ``out`` (None: ``reports_dir/grid-<variants>-vs-<baseline>-<data>``). A varied
        field must not also be given as a shortcut; ``until_decided`` is refused (cells stopping
        at different repeats could not be paired job by job). With ``registration``, its grid
        must be this one. :func:`~cvkit.multiverse.analyse_grid` analyses the result.
    **shortcuts
        Any field of ``Data`` (but ``source``: that is ``data``), ``Design``, ``TrainConfig``
        (but ``backbone``, ``weights_digest``) or ``Execution`` by name, for notebooks:
        ``evaluate("p.py", folds=3, epochs=2)`` is ``evaluate("p.py", design=Design(folds=3),
        recipe=TrainConfig(epochs=2))``. A shortcut replaces that field of the object passed.

    Returns
    -------
    Results or GridResults
        The run's :class:`~cvkit.results.Results`, with ``counts`` (jobs trained, resumed,
        reused) and ``concurrency`` set; with ``vary``, a
        :class:`~cvkit.multiverse.GridResults`: the grid's folder, the grid and each cell's
        recipe values with its ``Results``.

    Raises
    ------
    OptionError
        An option out of its range, naming the Python parameter (``vary`` for a bad grid).
    CvkitError
        Any other mistake in the data, the plugins or the run folder, on one line; a
        ``JobsFailed`` after every other job finished and was saved.
    TypeError
        A keyword that is no parameter and no field of the config objects.
    """
    if vary is not None:
        if until_decided is not None:
            raise not_sequential("until_decided")
        vary = parse_vary(vary)  # a bad grid stops here, before the data is read
        # The data is loaded once, here: the default folder names it, and no cell loads it again.
        data_fields = {name: shortcuts.pop(name) for name in _SHORTCUTS[Data] if name in shortcuts}
        data = _configure(data, shortcuts=data_fields)[0]
        with record_warnings() as loading:
            data = loaded_data(data)
        return evaluate_grid(
            variants,
            vary=vary,
            out=out or default_grid_dir(reports_dir, variants, baseline, data.source.name),
            evaluate=evaluate,
            recipe=recipe,
            registration=registration,
            progress=progress,
            baseline=baseline,
            data=data,
            design=design,
            execution=execution,
            hyperparams=hyperparams,
            reports_dir=reports_dir,
            command=command,
            caveats=[*caveats, *loading],
            **shortcuts,
        )
    data, design, recipe, execution = _configure(data, design, recipe, execution, shortcuts)
    variants = [variants] if isinstance(variants, (str, os.PathLike)) else list(variants)
    backbone = baseline if is_backbone(baseline) else TrainConfig.backbone
    if recipe.backbone not in (TrainConfig.backbone, backbone):
        raise OptionError(
            "baseline",
            f"{baseline!r} does not name the recipe's backbone {recipe.backbone!r}: the baseline sets "
            "it, pass that backbone as the baseline",
        )
    record = dict(
        variants=[str(v) for v in variants],
        baseline=str(baseline),
        seeds=design.seeds,
        seed=design.seed,
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        select=recipe.select,
        class_weight=recipe.class_weight,
        augment=recipe.augment,
        stem=recipe.stem,
        weights=recipe.weights,
        val_fraction=design.val_fraction,
        positive=data.positive,
        device=recipe.device,
        extra=data.extra,
        impute=recipe.impute,
        nested=design.nested,
        inner_folds=design.inner_folds,
        holdout=data.holdout,
        hyperparams=hyperparams,
        data_options=data.load_options or None,
        precision=recipe.precision,
        dedupe=data.dedupe,
        threads=execution.threads_per_job or 1,
    )
    if recipe.drop_last:  # only then: the recipes (and keys) of other runs stay as they were
        record["drop_last"] = True
    if until_decided is not None:
        if design.cv is not None or design.repeats != until_decided.max_repeats:
            raise ConfigError(
                f"a sequential run takes repeats from its rule: pass repeats={until_decided.max_repeats} "
                "(the maximum) and no custom splitter"
            )
        record["until_decided"] = until_decided.record()
    if registration is not None:
        _check_registration(
            registration, record, recipe, folds=design.folds, repeats=design.repeats, cv=design.cv
        )
    with record_warnings() as preparing:
        setup = _prepare(record, data=data.source, folds=design.folds, repeats=design.repeats, cv=design.cv)
    ensure_pretrained(_backbones(setup), setup.config.weights)  # a download happens here, once
    # Every model is built and run on two samples before the run folder exists: a plugin that
    # breaks the contract stops the run here, with one line, and leaves nothing behind.
    reads_extra = _preflight(setup)
    run_dir = Path(out) if out else _default_run_dir(reports_dir, setup.dataset, setup.models, setup.identity)
    # Stored rows: every test sample under each checkpoint rule and epoch, the validation part
    # (its kept checkpoint's predictions) and the hold-out set.
    holdout_rows = 0 if setup.holdout is None else len(setup.holdout)
    rows = (
        design.seeds
        * len(setup.models)
        * sum(
            len(split.test) * (len(SELECTION_RULES) + recipe.epochs) + len(split.val) + holdout_rows
            for split in setup.plan
        )
    )
    check_writable(run_dir, store_bytes(rows, setup.dataset.n_classes))

    with Store(run_dir, create=True) as store:
        previous = store.get_meta("identity")
        if previous is not None and previous != json.loads(json.dumps(setup.identity)):
            raise ConfigError(
                f"{run_dir} holds a run with other settings ({_differences(previous, setup.identity)}); "
                "pass another --out, or delete the folder to start over"
            )
        registered = store.get_meta("registration")
        if previous is None:
            _describe_run(
                store, setup, command, None if design.cv is not None else _stored_recipe(record, setup)
            )
            if registration is not None:
                store.set_meta("registration", registration.record())
        elif registration is not None and (registered or {}).get("sha256") != registration.sha256:
            started = "with another plan" if registered else "without a plan"
            raise ConfigError(
                f"{run_dir} was started {started}: a plan registered after a run began is not a "
                "pre-registration; pass another --out for the planned run"
            )
        else:
            _reanalyse(store, setup, command)
        if not (run_dir / THUMBNAILS_NAME).exists():  # a new run, or one made before cvkit kept them
            write_thumbnails(setup.dataset, run_dir)  # the reports' case gallery shows them
        _keep_caveats(store, [*caveats, *preparing])
        job_list, work = _jobs(setup, run_dir, reads_extra)
        concurrency = _concurrency(
            execution.jobs, execution.threads_per_job, setup.config, setup.dataset, setup.device
        )
        display = _progress_display(progress, recipe.epochs)
        with display or contextlib.nullcontext(), record_warnings() as training:
            runner = make_executor(execution.executor, ExecutorSettings(concurrency, setup.device, execution))
            # An executor that places jobs itself (Ray's tasks) says what runs at once.
            concurrency = getattr(runner, "concurrency", concurrency)
            if until_decided is None:
                counts = _run_stage(job_list, store, work, runner, display, run_dir)
            else:
                counts = _run_in_stages(job_list, store, work, runner, display, until_decided, run_dir)
        _keep_caveats(store, training)
    results = Results(run_dir)
    results.counts = counts
    results.concurrency = concurrency
    return results


# The keyword shortcuts of ``evaluate``: each config object's fields, but those given otherwise
# (``data`` is the source; the baseline sets the backbone; evaluate hashes the weights file).
_SHORTCUTS = {
    config: tuple(f.name for f in fields(config) if f.name not in ("source", "backbone", "weights_digest"))
    for config in (Data, Design, TrainConfig, Execution)
}


def _configure(data=None, design=None, recipe=None, execution=None, shortcuts=None):
    """``(Data, Design, TrainConfig, Execution)`` of an ``evaluate`` call: the objects given (None
    for each one's defaults), with the fields named in ``shortcuts`` replaced. ``data`` may also be
    a ``Dataset`` or a spec of ``load_data``."""
    shortcuts = dict(shortcuts or {})
    if not isinstance(data, Data):
        data = Data() if data is None else Data(source=data)
    configs = []
    for config, given in zip(_SHORTCUTS, (data, design, recipe, execution)):
        chosen = {name: shortcuts.pop(name) for name in _SHORTCUTS[config] if name in shortcuts}
        configs.append(config(**chosen) if given is None else replace(given, **chosen) if chosen else given)
    if shortcuts:
        raise TypeError(f"evaluate() got an unexpected keyword argument {next(iter(shortcuts))!r}")
    return tuple(configs)


def _run_stage(jobs, store, work, runner, display, run_dir) -> RunCounts:
    """Train ``jobs`` (those not done yet). Claims let drivers started on one folder share its
    jobs; a paused job's state is kept in the run folder, where the next run sweeps it if this
    process is killed. ``run_jobs`` ends its claims, so each call gets its own."""
    claims = JobClaims(run_dir)
    work = replace(work, paused_dir=str(claims.paused_dir))
    return run_jobs(jobs, store, work, executor=runner, progress=display, claims=claims)


def _run_in_stages(job_list, store, work, runner, display, rule: SequentialRule, run_dir) -> RunCounts:
    """A sequential run: the jobs of repeats 0 and 1, a look at every variant, then one more repeat
    at a time until every variant is decided or the rule's maximum is reached. The looks are
    stored after each stage (``sequential`` in the store), so that reports say where it stopped."""
    total, handled, looks = RunCounts(), 0, {}
    for stage in range(2, rule.max_repeats + 1):
        jobs = [job for job in job_list if job.repeat < stage]
        counts = _run_stage(jobs, store, work, runner, display, run_dir)
        total.trained += counts.trained
        total.reused += counts.reused
        total.failed += counts.failed
        total.resumed += counts.resumed - handled  # not the earlier stages' jobs again
        handled = len(jobs)
        looks = sequential_looks(Results(run_dir), rule, looks)
        decided = all(v and v[-1].decision != "continue" for v in looks.values())
        store.set_meta(
            "sequential",
            dict(
                rule=rule.record(),
                repeats_run=stage,
                decided=decided,
                looks={name: [dataclasses.asdict(look) for look in v] for name, v in looks.items()},
            ),
        )
        if decided:
            break
    return total


def _check_registration(
    registration: AnalysisPlan, recipe: dict, config: TrainConfig, *, folds, repeats, cv
) -> None:
    """The run asked for must be the one the plan fixes: its design and its models, and with a
    pre-registered recipe grid, a recipe that is one of its cells."""
    planned = {"sequential": False, **registration.design}
    grid = planned.pop("vary", None)
    asked = dict(
        folds=folds, repeats=repeats, seeds=recipe["seeds"], seed=recipe["seed"],
        sequential=recipe.get("until_decided") is not None,
    )  # fmt: skip
    differ = [f"{key} {asked[key]} (plan: {planned[key]})" for key in planned if asked[key] != planned[key]]
    models = registration.models
    if recipe["baseline"] != models["baseline"]:
        differ.append(f"baseline {recipe['baseline']} (plan: {models['baseline']})")
    if recipe["variants"] != models["variants"]:
        differ.append(f"variants {', '.join(recipe['variants'])} (plan: {', '.join(models['variants'])})")
    if cv is not None:
        differ.append("a custom splitter (the plan fixes folds and repeats)")
    differ += [
        f"{k} {getattr(config, k)!r} (plan: {v})"
        for k, v in (grid or {}).items()
        if getattr(config, k) not in v
    ]
    if differ:
        raise ConfigError(f"this run is not the pre-registered one: {'; '.join(differ)}")


def _progress_display(progress, epochs: int):
    """The display ``progress`` asks for: on request or by default, a notebook's in-place line
    in Jupyter (rich's bars need ipywidgets there) and rich's bars elsewhere (shown on a terminal)."""
    if progress is None or progress is True:
        from rich.console import Console

        in_notebook = Console().is_jupyter
        return NotebookProgress(epochs=epochs) if in_notebook else JobProgress(epochs=epochs)
    return progress or None


def loaded_data(data: Data) -> Data:
    """``data`` with its source loaded into a ``Dataset`` (a run of every cell of a grid, or the
    command line, loads it once); the loading options are spent, the positive class is the
    dataset's.

    Parameters
    ----------
    data : Data
        The data settings.

    Returns
    -------
    Data
        The same settings with ``source`` the loaded ``Dataset``.
    """
    if isinstance(data.source, Dataset):
        return data
    dataset = load_data(data.source, positive=data.positive, **data.load_options)
    return replace(
        data, source=dataset, positive=None, image_size=None, intensity_window=None, demo_extra_signal=None
    )


@_keeps_global_state
def verify(run_dir, *, jobs: int = 3, seed: int = 0) -> Verification:
    """Train finished jobs of a run again and compare their predictions with the stored ones:
    bit for bit on a CPU, within :data:`~cvkit.runner.GPU_TOLERANCE` on a GPU. A job that differs
    is trained once more to tell nondeterminism in this process from a different environment.

    Parameters
    ----------
    run_dir : str or path
        A run folder made by ``cvkit evaluate`` (or :func:`evaluate` from a data spec).
    jobs : int, default=3
        How many finished jobs to train again (at least 1).
    seed : int, default=0
        Seed of the sample of jobs.

    Returns
    -------
    Verification
        One check per job trained again, the tolerance used and how many jobs were done.

    Raises
    ------
    OptionError
        ``jobs`` below 1.
    ConfigError
        A run without a stored recipe, or whose inputs (data, plugins) changed since it ran.
    StoreError
        No run store in ``run_dir``, or an unfinished run.
    """
    if jobs < 1:
        raise OptionError("jobs", f"must be at least 1, got {jobs}")
    with Store(run_dir) as store:
        store.check_finished()
        recipe, run = store.get_meta("recipe"), store.get_meta("run")
        if recipe is None:
            raise ConfigError(
                f"{run_dir}: the run keeps no recipe to redo its jobs (it was made from a Python "
                "Dataset object, with a custom splitter, or by an older cvkit); verify needs a run "
                "made by cvkit evaluate"
            )
        design = run["design"]
        plan = SplitPlan.from_records(
            store.get_meta("plan"),
            n_splits=design["folds"],
            n_repeats=design["repeats"],
            seed=design["seed"],
            val_fraction=design["val_fraction"],
        )
        setup = _prepare(recipe, data=recipe["data"], plan=plan)
        previous = store.get_meta("identity")
        if previous != json.loads(json.dumps(setup.identity)):
            raise ConfigError(
                f"{run_dir}: the run's inputs changed since it ran "
                f"({_differences(previous, setup.identity)}); "
                "verify redoes the same jobs only: restore them, or evaluate into a new folder"
            )
        job_list, work = _jobs(setup, Path(run_dir), _preflight(setup))
        return verify_jobs(job_list, store, work, n_jobs=jobs, seed=seed)


@dataclass
class _Setup:
    """A run's inputs, prepared: data, models, recipe, split plan and identity."""

    dataset: Dataset
    holdout: Dataset | None
    models: dict
    config: TrainConfig
    plan: object
    design: dict
    identity: dict
    device: str
    seeds: int
    seed: int
    threads: int  # intra-op CPU threads of each job: part of the job keys
    source: dict | None  # the load_data call that gave the data, when one did
    duplicates: dict  # what the duplicate check found (CV pool and across the hold-out boundary)
    holdout_part: str | None


def _prepare(recipe: dict, *, data, folds=None, repeats=None, cv=None, plan=None) -> _Setup:
    """Load the data and the models of ``recipe`` and make the split plan (or take ``plan``)."""
    r = recipe
    if isinstance(data, Dataset):
        dataset = data.with_positive(r["positive"]) if r["positive"] else data
    else:
        dataset = load_data(str(data), positive=r["positive"], **(r["data_options"] or {}))
    source = dataset.loaded_with
    dataset = with_extra(dataset, r["extra"])
    check_missing(dataset, r["impute"])
    dataset, holdout_data = dataset.split_off(r["holdout"])
    duplicates, across = _find_duplicates(dataset, holdout_data)
    found = dict(
        pairs=len(duplicates),
        exact=sum(p.exact for p in duplicates),
        holdout_pairs=len(across),
        dedupe=bool(r["dedupe"]),
        dropped=0,
    )
    if r["dedupe"] and (duplicates or across):
        before = len(dataset)
        if across:
            # A copy of a hold-out image leaves the CV data (the hold-out set stays whole: it is the
            # official test part); the pairs left inside the CV data are looked for again.
            copies = {pair.first for pair in across}
            dataset = dataset.subset([i for i in range(len(dataset)) if i not in copies])
            warnings.warn(
                f"--dedupe: dropped {len(copies)} cross-validation image(s) that copy hold-out images",
                stacklevel=3,
            )
            duplicates = find_duplicates(dataset.images)
        if duplicates:
            dataset, lines = drop_duplicates(dataset, duplicates)
            for line in lines:
                warnings.warn(line, stacklevel=3)
        found["dropped"] = before - len(dataset)
        duplicates, across = [], []
    found["holdout_images"] = len({pair.second for pair in across})  # hold-out images with a copy in CV
    if across:
        warnings.warn(_holdout_duplicate_warning(across, found["holdout_images"], r["holdout"]), stacklevel=3)
    content = _content_key(dataset, holdout_data)

    hyperparams = r["hyperparams"] or {}
    baseline, nested = r["baseline"], r["nested"]
    specs = [("baseline", baseline), *(("variant", v) for v in r["variants"])]
    names = [Path(str(spec)).stem if str(spec).endswith(".py") else str(spec) for _, spec in specs]
    unknown = sorted(set(hyperparams) - set(names))
    if unknown:
        raise ConfigError(
            f"hyper-parameters given for {', '.join(unknown)}, which is not a model of this run "
            f"({', '.join(names)})"
        )
    models = {}
    for name, (role, spec) in zip(names, specs):
        plugin = load_plugin(str(spec), hyperparams.get(name))
        if plugin.search and nested:
            plugin = plugin.nested(r["inner_folds"], r["val_fraction"])
        elif plugin.search:
            space = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in plugin.search.items())
            warnings.warn(
                f"{plugin.origin} declares a search space ({space}); without --nested its defaults "
                f"{plugin.hyperparams} are used",
                stacklevel=3,
            )
        if name in models:
            raise ConfigError(f"two models are named {name!r}; rename one plugin file")
        models[name] = (role, plugin)

    if nested and not any(p.search for _, p in models.values()):
        warnings.warn(
            "--nested: no model of this run declares a SEARCH space; nothing is searched", stacklevel=3
        )
    device = _resolve_device(r["device"])
    config = TrainConfig(
        epochs=r["epochs"],
        batch_size=r["batch_size"],
        lr=r["lr"],
        weight_decay=r["weight_decay"],
        select=r["select"],
        class_weight=r["class_weight"],
        augment=r["augment"],
        device=r["device"],
        backbone=baseline if is_backbone(baseline) else "resnet18",
        stem=r["stem"],
        weights=r["weights"],
        weights_digest=_file_digest(r["weights"]),
        impute=r["impute"],
        precision=r["precision"],
        drop_last=r.get("drop_last", False),
    )
    if plan is None:
        plan = make_plan(
            dataset.labels,
            folds,
            repeats,
            seed=r["seed"],
            val_fraction=r["val_fraction"],
            groups=dataset.groups,
            cv=cv,
            class_names=dataset.class_names,
        )
    found["split_by_folds"] = _split_by_folds(duplicates, plan)
    if duplicates:
        warnings.warn(
            _duplicate_warning(duplicates, found["split_by_folds"], dataset.groups, dataset.labels),
            stacklevel=3,
        )
    design = dict(
        folds=plan.n_splits,
        repeats=plan.n_repeats,
        seeds=r["seeds"],
        seed=r["seed"],
        val_fraction=r["val_fraction"],
        plan_digest=plan.digest,
        custom_cv=cv is not None,
        nested=nested,
        inner_folds=r["inner_folds"] if nested else None,
    )
    if r.get("until_decided"):  # only then: the identities of other runs stay as they were
        design["sequential"] = r["until_decided"]
    # Runs recorded before the thread count was part of the recipe trained with one thread.
    threads = r.get("threads", 1)
    identity = dict(
        data=content,
        design=design,
        config=config.as_dict(),
        device=device,
        threads_per_job=threads,
        models={n: [role, p.digest, p.hyperparams] for n, (role, p) in models.items()},
    )
    if dataset.n_classes > 2:
        # With more classes the positive one changes training: val_auc and the nested search score
        # its one-vs-rest AUC. With two, either class's AUC ranks the same: it changes the analysis only.
        identity["positive"] = dataset.positive_name
    return _Setup(
        dataset,
        holdout_data,
        models,
        config,
        plan,
        design,
        identity,
        device,
        r["seeds"],
        r["seed"],
        threads,
        source,
        duplicates=found,
        holdout_part=r["holdout"],
    )


def _preflight(setup: _Setup) -> dict[str, bool]:
    """Build and run every model on two samples (see ``trainers.preflight``): model name ->
    whether its predictions depend on the extra features."""
    sample = setup.dataset.subset([0, 1])
    context = _train_context(setup, cache_dir=None)
    return {name: preflight(plugin, context, sample) for name, (_, plugin) in setup.models.items()}


def _jobs(setup: _Setup, run_dir: Path, reads_extra: dict[str, bool]):
    """The run's jobs and the ``JobRunner`` that trains any of them. A model that does not read
    the extra features has job keys without them: another extra-feature file (or none) reuses its
    jobs."""
    dataset = setup.dataset
    keys = {with_extra: _training_data_key(setup, with_extra=with_extra) for with_extra in (False, True)}
    job_list = make_jobs(
        {n: p for n, (_, p) in setup.models.items()},
        setup.plan,
        n_seeds=setup.seeds,
        master_seed=setup.seed,
        config=setup.config,
        data_fingerprints={name: keys[reads] for name, reads in reads_extra.items()},
        device=setup.device,
        threads=setup.threads,
    )
    context = _train_context(setup, cache_dir=str(run_dir.resolve().parent / ".cache" / "features"))
    return job_list, JobRunner(dataset, setup.plan, context, setup.holdout)


def _train_context(setup: _Setup, cache_dir: str | None) -> TrainContext:
    """What every job of the run tells its trainer (the runner sets each job's seed and hyper-parameters)."""
    return TrainContext.for_data(
        setup.dataset, setup.config, seed=setup.seed, device=setup.device, cache_dir=cache_dir
    )


def _content_key(dataset: Dataset, holdout: Dataset | None, *, with_extra: bool = True) -> str:
    """What the predictions depend on in the data: the CV data and, when there is one, the hold-out
    set; their extra features only ``with_extra``."""

    def digest(d: Dataset) -> str:
        return d.fingerprint if with_extra else d.fingerprint_without_extra

    if holdout is None:
        return digest(dataset)
    return hashlib.sha256(f"{digest(dataset)}+{digest(holdout)}".encode()).hexdigest()


def _training_data_key(setup: _Setup, *, with_extra: bool) -> str:
    """The data part of a job key: the content (its extra features only ``with_extra``) and,
    where it changes training, the positive class."""
    content = _content_key(setup.dataset, setup.holdout, with_extra=with_extra)
    if "positive" not in setup.identity:
        return content
    return hashlib.sha256(f"{content}+positive={setup.identity['positive']}".encode()).hexdigest()


def _backbones(setup: _Setup) -> list[str]:
    """The run's backbone and the built-in backbones among its models (they take --weights too)."""
    return [setup.config.backbone, *(p.name for _, p in setup.models.values() if p.path is None)]


def _stored_recipe(recipe: dict, setup: _Setup) -> dict | None:
    """What the predictions depend on, kept so that `cvkit verify` can redo any job from any
    folder: absolute data, extra-feature and plugin paths, and the positive class actually used.
    The weights path stays as given: it is part of the job keys. None for data built in Python."""
    if setup.source is None:
        return None
    specs = [plugin.spec or plugin.name for _, plugin in setup.models.values()]
    extra = recipe["extra"]
    return dict(
        recipe,
        data=setup.source["spec"],
        data_options=setup.source["options"],
        baseline=specs[0],
        variants=specs[1:],
        positive=setup.dataset.positive_name,
        extra=extra if extra in (None, "handcrafted") else str(Path(extra).resolve()),
    )


def _find_duplicates(dataset: Dataset, holdout: Dataset | None):
    """``(pairs within the CV data, pairs across the hold-out boundary)``; an across pair's ``first``
    indexes the CV data, its ``second`` the hold-out set after it. Pairs within the hold-out set
    are no leak (no fold trains on it)."""
    if holdout is None:
        return find_duplicates(dataset.images), []
    n = len(dataset)
    pairs = find_duplicates(np.concatenate([dataset.images, holdout.images]))
    inside = [p for p in pairs if p.second < n]
    across = [DuplicatePair(p.first, p.second - n, p.exact) for p in pairs if p.first < n <= p.second]
    return inside, across


def _holdout_duplicate_warning(across, n_images, part) -> str:
    exact = sum(p.exact for p in across)
    return (
        f"{len(across)} duplicate image pair(s) ({exact} exact, {len(across) - exact} near-identical) "
        f"straddle the cross-validation data and the hold-out set ({part}): {n_images} hold-out image(s) "
        "have a copy the fold models trained on, so the hold-out score looks better than it is. --dedupe "
        "drops the copies from the cross-validation data"
    )


def _split_by_folds(pairs, plan) -> int:
    """How many duplicate pairs end up on both sides of a split in some fold."""
    tests = [set(split.test.tolist()) for split in plan]
    return sum(any((p.first in test) != (p.second in test) for test in tests) for p in pairs)


def _duplicate_warning(pairs, crossing, groups, labels) -> str:
    """What the duplicate pairs mean for this plan: how many end up on both sides of a split, and
    how many carry different labels."""
    exact = sum(p.exact for p in pairs)
    text = (
        f"{len(pairs)} duplicate image pair(s) ({exact} exact, {len(pairs) - exact} near-identical), "
        f"{crossing} of them split between training and test in some fold: a model scored on an image it "
        "trained on looks better than it is. --dedupe keeps one image of each"
    )
    if groups is None:
        text += "; if duplicates mean the same patient, give a group (patient_id) column"
    else:
        apart = sum(groups[p.first] != groups[p.second] for p in pairs)
        text += f"; {apart} pair(s) lie in different groups: check the patient ids" if apart else ""
    conflicting = sum(labels[p.first] != labels[p.second] for p in pairs)
    if conflicting:
        text += f"; {conflicting} pair(s) carry different labels (--dedupe drops every such copy)"
    return text


def _describe_run(store, setup: _Setup, command, recipe):
    dataset, holdout = setup.dataset, setup.holdout
    store.set_meta(
        "run",
        dict(
            cvkit_version=__version__,
            command=command,
            device=setup.device,
            config=setup.config.as_dict(),
            design=setup.design,
            data=dict(
                name=dataset.name,
                description=dataset.description,
                intensity=dataset.intensity,
                source=dataset.source,
                fingerprint=dataset.fingerprint,
                n_samples=len(dataset),
                image_shape=list(dataset.images.shape[1:]),
                class_names=list(dataset.class_names),
                positive=dataset.positive,
                class_counts=dataset.class_counts,
                extra_names=list(dataset.extra_names),
                has_groups=dataset.groups is not None,
                grouping=None
                if dataset.groups is None
                else dict(column=dataset.group_column, n_groups=len(set(dataset.groups.tolist()))),
                parts=None if dataset.parts is None else list(dict.fromkeys(dataset.parts.tolist())),
                duplicates=setup.duplicates,
                missing_extra=0 if dataset.extra is None else int(np.isnan(dataset.extra).sum()),
            ),
            holdout=None
            if holdout is None
            else dict(
                n_samples=len(holdout),
                class_counts=holdout.class_counts,
                fingerprint=holdout.fingerprint,
                part=setup.holdout_part,
                cv_duplicates=setup.duplicates["holdout_images"],
            ),
        ),
    )
    if recipe is not None:
        store.set_meta("recipe", recipe)
    store.set_meta("plan", setup.plan.to_records())
    store.write_samples(dataset.sample_ids, dataset.labels, dataset.groups, holdout)
    for name, (role, plugin) in setup.models.items():
        store.write_model(name, role, plugin.origin, plugin.digest, plugin.hyperparams)
    store.set_meta("identity", setup.identity)  # last: a run described only in part is described again


def _reanalyse(store, setup: _Setup, command) -> None:
    """A resumed run is analysed as this call asks: its positive class (which, with two classes,
    changes no prediction; with more it is part of the identity) and the command shown in reports."""
    run = store.get_meta("run")
    run["data"]["positive"] = setup.dataset.positive
    if command is not None:
        run["command"] = command
    store.set_meta("run", run)
    recipe = store.get_meta("recipe")
    if recipe is not None:
        store.set_meta("recipe", dict(recipe, positive=setup.dataset.positive_name))


@contextlib.contextmanager
def record_warnings():
    """Yields a list that collects the text of every warning shown inside; each is still shown."""
    caught: list[str] = []
    show = warnings.showwarning

    def record(message, category, filename, lineno, file=None, line=None):
        caught.append(str(message))
        show(message, category, filename, lineno, file, line)

    warnings.showwarning = record
    try:
        yield caught
    finally:
        warnings.showwarning = show


def _keep_caveats(store, lines) -> None:
    """Add warnings to the run's caveats (kept across resumes: a resumed run trains less and warns less)."""
    kept = store.get_meta("caveats", [])
    new = [line for line in dict.fromkeys(lines) if line not in kept]
    if new:
        store.set_meta("caveats", kept + new)


def _default_run_dir(reports_dir, dataset, models, identity) -> Path:
    """Same settings, same folder: rerunning a command resumes it."""
    names = list(models)
    label = "-vs-".join(names[1:] + names[:1]) if len(names) > 1 else names[0]
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return Path(reports_dir) / f"{label}-{dataset.name}-{digest}"


def _differences(previous: dict, current: dict) -> str:
    current = json.loads(json.dumps(current))
    changed = [k for k in current if previous.get(k) != current[k]]
    if "models" in changed:
        models = [
            m
            for m in current["models"].keys() | previous.get("models", {}).keys()
            if previous.get("models", {}).get(m) != current["models"].get(m)
        ]
        changed[changed.index("models")] = f"models ({', '.join(sorted(models))})"
    if "positive" in changed:
        changed[changed.index("positive")] = (
            f"positive class {current['positive']} (with more than two classes it chooses the checkpoints)"
        )
    return "different " + ", ".join(changed)


def _file_digest(weights: str | None) -> str | None:
    """SHA-256 of a local checkpoint file, so that a changed file never reuses old jobs."""
    if not weights or not Path(weights).is_file():
        return None
    return hashlib.sha256(Path(weights).read_bytes()).hexdigest()


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError("device", f"{device}: no CUDA device is available here; use cpu")
    return device


def _concurrency(jobs, threads_per_job, config, dataset, device):
    """How many jobs train side by side, estimated from the run's backbone, images and device."""
    if jobs == "auto":
        import torch

        with torch.device("meta"):  # shapes only: no memory, and no torch computation in this process
            model = classifier(
                config.backbone,
                in_channels=dataset.images.shape[1],
                n_classes=dataset.n_classes,
                stem=config.stem,
            )
        n_parameters = sum(p.numel() for p in model.parameters())
    else:
        n_parameters = 0
    return choose_concurrency(
        device=device,
        jobs=jobs,
        threads_per_job=threads_per_job,
        n_parameters=n_parameters,
        sample_bytes=4 * int(np.prod(dataset.images.shape[1:])),
        n_samples=len(dataset),
        batch_size=config.batch_size,
    )
