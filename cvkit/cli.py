"""The ``cvkit`` command line: ``evaluate``, ``compare``, ``report``, ``export``, ``verify``,
``plugins`` and ``new-plugin``."""

from __future__ import annotations

import argparse
import contextlib
import gc
import inspect
import json
import os
import shlex
import signal
import sys
import threading
import time
import warnings
from dataclasses import fields
from pathlib import Path

from rich.console import Console

from . import escape
from ._version import __version__
from .api import evaluate
from .data import Data
from .errors import CvkitError, OptionError
from .runner import EXECUTORS, Execution
from .splits import Design
from .stats import DEFAULT_NB_THRESHOLDS, DEFAULT_OPERATING_POINT, RECALIBRATION_METHODS, VERDICT_METRICS
from .trainers import (
    AUGMENTATIONS,
    CLASS_WEIGHTS,
    IMPUTATIONS,
    PRECISIONS,
    SELECTION_RULES,
    STEMS,
    TrainConfig,
)

# The command line's defaults are the config objects' own (and evaluate's, for its other
# arguments): one set.
REPORTS_DIR = inspect.signature(evaluate).parameters["reports_dir"].default


# Config fields without a flag of their own: a splitter object, the backbone (``--baseline``
# names it), the weights file's hash (computed) and load_data's other options (in Python only).
_NO_FLAG = ("cv", "backbone", "weights_digest", "data_options")
# Config fields whose flag has another name: field -> the flag's dest.
_FLAG_DESTS = {"source": "data"}


def _flags(config) -> list:
    """The fields of a config object (``Data``, ``Design``, ...) that flags of ``evaluate`` set."""
    return [field for field in fields(config) if field.name not in _NO_FLAG]


class _Parser(argparse.ArgumentParser):
    """argparse that answers a mistake with the one useful line first, then where the usage is,
    instead of the whole usage (some 20 lines) above it, and keeps the flag of each option
    (``flags``: dest -> ``--flag``). Subcommands inherit the class."""

    def __init__(self, *args, **kwargs):
        self.flags: dict[str, str] = {}  # before argparse's own __init__, which adds --help
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        if action.option_strings:
            self.flags[action.dest] = action.option_strings[-1]
        return action

    def error(self, message: str):
        self.exit(2, escape.printable(f"cvkit: error: {message}") + f"\nrun {self.prog} --help for usage\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cvkit", description="Does this variant really beat the baseline?")
    parser.add_argument("--version", action="version", version=f"cvkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", required=True)
    parser.commands = commands.choices  # command -> its parser

    ev = commands.add_parser("evaluate", help="cross-validate variants against the baseline")
    ev.add_argument(
        "variants", nargs="*", help="plugin files (or built-in names) to compare with the baseline"
    )
    ev.add_argument(
        "--data",
        default=Data.source,
        help="demo (built-in synthetic set), a MedMNIST .npz, an image folder or a CSV manifest",
    )
    ev.add_argument(
        "--baseline",
        default=TrainConfig.backbone,
        help="resnet18 (default), resnet34/50/101, densenet121, timm:NAME, logreg or a plugin file",
    )
    ev.add_argument(
        "--plan",
        default=None,
        metavar="PLAN.toml",
        help="run a pre-registered analysis plan (cvkit plan --write): its models, design, metric, alpha, "
        "ROPE and smallest effect; every report then says so",
    )
    ev.add_argument(
        "--until-decided",
        action="store_true",
        default=None,  # evaluate's own default: no sequential rule
        help="sequential design: run repeats in stages (2, then one more at a time) and stop when each "
        "variant is decided (alpha spending, futility, equivalence); --max-repeats caps it",
    )
    ev.add_argument(
        "--max-repeats", type=int, default=None, help="with --until-decided: the most repeats (default 10)"
    )
    ev.add_argument("--folds", type=int, default=Design.folds)
    ev.add_argument("--repeats", type=int, default=Design.repeats)
    ev.add_argument("--seeds", type=int, default=Design.seeds, help="training seeds per split")
    ev.add_argument("--seed", type=int, default=Design.seed, help="master seed of splits and training seeds")
    ev.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ev.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    ev.add_argument("--lr", type=float, default=TrainConfig.lr)
    ev.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay)
    ev.add_argument(
        "--select",
        default=TrainConfig.select,
        choices=SELECTION_RULES,
        help="checkpoint selection rule",
    )
    ev.add_argument("--class-weight", default=TrainConfig.class_weight, choices=CLASS_WEIGHTS)
    ev.add_argument("--augment", default=TrainConfig.augment, choices=AUGMENTATIONS)
    ev.add_argument(
        "--drop-last",
        action="store_true",
        default=TrainConfig.drop_last,
        help="drop each epoch's last incomplete batch (part of the job key)",
    )
    ev.add_argument(
        "--stem",
        default=TrainConfig.stem,
        choices=STEMS,
        help="ResNet stem: torchvision's standard one or a 3x3 stride-1 small-image stem",
    )
    ev.add_argument(
        "--weights",
        default=TrainConfig.weights,
        help="DEFAULT (torchvision's pretrained weights: from the torch hub cache, downloaded there when "
        "absent) or a checkpoint PATH",
    )
    ev.add_argument(
        "--offline",
        action="store_true",
        help="never download: --weights DEFAULT must already be in the torch hub cache",
    )
    ev.add_argument(
        "--val-fraction",
        type=float,
        default=Design.val_fraction,
        help="inner validation share of each training fold",
    )
    ev.add_argument(
        "--positive", default=Data.positive, help="name of the positive class (default: the minority class)"
    )
    ev.add_argument("--image-size", type=int, default=Data.image_size, help="resize images to N x N")
    ev.add_argument(
        "--intensity-window",
        type=float,
        nargs=2,
        default=Data.intensity_window,
        metavar=("LOW", "HIGH"),
        help="bring 16-bit, float and DICOM (after rescale) grey values to 8 bits through this fixed "
        "window (LOW -> 0, HIGH -> 255) instead of per-image min-max (DICOM: the file's own window)",
    )
    ev.add_argument(
        "--extra",
        default=Data.extra,
        metavar="CSV|handcrafted",
        help="extra per-image features: a CSV joined by sample_id, or 'handcrafted' (intensity, "
        "shape and texture features computed from each image)",
    )
    ev.add_argument(
        "--dedupe",
        action="store_true",
        help="keep one image of each exact or near-identical duplicate (reported either way)",
    )
    ev.add_argument(
        "--impute",
        default=TrainConfig.impute,
        choices=IMPUTATIONS,
        help="fill missing extra values with the mean or median of each training fold",
    )
    ev.add_argument(
        "--demo-extra-signal",
        type=float,
        default=Data.demo_extra_signal,
        metavar="S",
        help="demo data only: how informative its extra features are (0 = pure noise, default 1)",
    )
    ev.add_argument("--device", default=TrainConfig.device, help="auto, cpu, cuda or cuda:N")
    ev.add_argument(
        "--jobs",
        default=Execution.jobs,
        type=_jobs,
        help="trainings run side by side (default auto: from the cores or GPU, model and memory)",
    )
    ev.add_argument(
        "--threads-per-job",
        type=int,
        default=Execution.threads_per_job,
        metavar="N",
        help="CPU threads of each training (default 1; changes the predictions' last bits)",
    )
    ev.add_argument(
        "--executor",
        default=Execution.executor,
        choices=EXECUTORS,
        help="; ".join(
            f"{name}: {executor.summary}" + " (default)" * (name == "local")
            for name, executor in EXECUTORS.items()
        ),
    )
    ev.add_argument(
        "--address",
        default=Execution.address,
        help="--executor ray: the cluster's HOST:PORT (default: start a local one)",
    )
    ev.add_argument(
        "--cpus-per-job",
        type=float,
        default=Execution.cpus_per_job,
        help="--executor ray: CPUs each task declares",
    )
    ev.add_argument(
        "--gpus-per-job",
        type=float,
        default=Execution.gpus_per_job,
        help="--executor ray: GPUs each task declares (0.25 ...)",
    )
    ev.add_argument(
        "--retries",
        type=int,
        default=Execution.retries,
        help="runs of a job whose worker died, beyond the first",
    )
    ev.add_argument(
        "--mlflow",
        default=None,
        metavar="TRACKING_URI",
        nargs="?",
        const="",
        help="also export the run to MLflow (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)",
    )
    ev.add_argument(
        "--precision",
        default=TrainConfig.precision,
        choices=PRECISIONS,
        help="auto: bf16 autocast on a GPU that supports it, fp32 on CPU",
    )
    ev.add_argument("--out", default=None, help="run folder (default: reports/<models>-<data>-<hash>)")
    ev.add_argument(
        "--vary",
        action="append",
        default=None,
        metavar="NAME=V1,V2",
        help="run the comparison in every cell of a grid of recipes (repeatable: batch_size=16,32 "
        "--vary drop_last=true,false) and say whether the verdict holds in each; each cell is a run "
        "under --out (default: reports/grid-<variants>-vs-<baseline>-<data>), grid.json and "
        "grid-predictions.csv beside them, and the --report documents grid.html, grid.md, grid.tex",
    )
    ev.add_argument("--reports-dir", default=REPORTS_DIR, help="where default run folders go")
    ev.add_argument("--json", default=None, metavar="PATH", help="also write a machine-readable summary")
    ev.add_argument(
        "--report",
        default="html,md,latex",
        metavar="FORMATS",
        help="reports written into the run folder (a grid's folder: grid.html, grid.md, grid.tex): any "
        "of html,md,latex, or none",
    )
    ev.add_argument(
        "--holdout",
        default=Data.holdout,
        metavar="PART",
        help="keep an official part (e.g. test: MedMNIST's test arrays, or a manifest's split column) "
        "out of all cross-validation; every fold model predicts it",
    )
    ev.add_argument(
        "--nested",
        action="store_true",
        help="choose each plugin's SEARCH hyper-parameters by inner CV inside every outer training fold",
    )
    ev.add_argument(
        "--inner-folds",
        type=int,
        default=Design.inner_folds,
        help="inner folds of --nested (default 3)",
    )
    ev.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="MODEL.NAME=VALUE",
        help="hyper-parameter override of one model, e.g. mlp_head.hidden=100",
    )
    _comparison_options(ev)

    cmp = commands.add_parser(
        "compare",
        help="recompute tests and verdicts from a run's store (no training); with two or more runs of "
        "the same models on different data sets, rank the models over the data sets (Friedman/Nemenyi)",
    )
    cmp.add_argument("run_dir", nargs="+", metavar="RUN_DIR")
    cmp.add_argument(
        "--cd-diagram",
        default="critical_difference.png",
        metavar="PATH",
        help="two or more runs: where to write the critical-difference diagram (default: %(default)s)",
    )
    cmp.add_argument("--baseline", default=None, help="compare against this model of the run instead")
    cmp.add_argument("--json", default=None, metavar="PATH", help="also write a machine-readable summary")
    _comparison_options(cmp)
    _positive_option(cmp)

    plan = commands.add_parser(
        "plan",
        help="before a run: which design detects a smallest effect with the target power, at what cost "
        "(from an earlier run, or from stated priors)",
    )
    source = plan.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from", dest="from_run", metavar="RUN_DIR", help="an earlier run (pilot) of the models"
    )
    source.add_argument("--samples", type=int, help="priors: samples in the cross-validation pool")
    plan.add_argument(
        "--fold-sd", type=float, help="priors: sd of the per-fold difference (variant - baseline)"
    )
    plan.add_argument(
        "--seed-sd", type=float, default=0.0, help="priors: sd of one job's difference between training seeds"
    )
    plan.add_argument("--folds", type=int, default=5, help="priors: the folds --fold-sd was measured at")
    plan.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="PLUGIN",
        help="priors: a variant to be compared (repeatable; alpha is split over them); with --write, the "
        "variants the plan fixes (default: the run's)",
    )
    plan.add_argument(
        "--baseline", default=None, help="with --write: the baseline the plan fixes (default: the run's)"
    )
    plan.add_argument(
        "--write",
        default=None,
        metavar="PLAN.toml",
        help="pre-register: write the analysis plan (metric, alpha, ROPE, smallest effect, models, design, "
        "decision and stopping rule) for cvkit evaluate --plan; .toml or .json",
    )
    plan.add_argument(
        "--design",
        default=None,
        metavar="KxRxS",
        help="with --write: the design to fix, folds x repeats x seeds per split (default: the recommended)",
    )
    plan.add_argument(
        "--seconds-per-job", type=float, help="priors: training seconds of one job of one model"
    )
    plan.add_argument(
        "--until-decided",
        action="store_true",
        help="with --write: pre-register the sequential design (cvkit evaluate --until-decided) instead of "
        "a fixed one, up to --max-repeats",
    )
    plan.add_argument("--max-repeats", type=int, default=10, help="with --until-decided: the most repeats")
    plan.add_argument("--power", type=float, default=0.8, help="target power (default: %(default)s)")
    plan.add_argument("--jobs", type=int, default=1, help="jobs at once, for the expected times (default 1)")
    plan.add_argument("--json", default=None, metavar="PATH", help="also write the plan as JSON")
    plan.add_argument(
        "--vary",
        action="append",
        default=None,
        metavar="NAME=V1,V2",
        help="also state the cost of running the recommended design in every cell of this recipe grid; "
        "with --write, pre-register the grid (cvkit evaluate --plan then runs every cell)",
    )
    _comparison_options(plan)

    rep = commands.add_parser("report", help="regenerate a run's reports from its store (no training)")
    rep.add_argument("run_dir")
    rep.add_argument("--html", action="store_true", help="write report.html (default: every format)")
    rep.add_argument("--md", action="store_true", help="write report.md and its figures")
    rep.add_argument("--latex", action="store_true", help="write table.tex")
    rep.add_argument("--open", action="store_true", help="open the HTML report in a browser")
    rep.add_argument("--json", default=None, metavar="PATH", help="also write a machine-readable summary")
    _comparison_options(rep)
    _positive_option(rep)

    ver = commands.add_parser(
        "verify", help="train stored jobs again and compare their predictions bit for bit"
    )
    ver.add_argument("run_dir")
    ver.add_argument("--jobs", type=int, default=3, help="how many finished jobs to train again (default 3)")
    ver.add_argument("--seed", type=int, default=0, help="which jobs: the seed of the sample")

    commands.add_parser(
        "plugins", help="list the example plugins that ship with cvkit and the built-in models"
    )
    new = commands.add_parser("new-plugin", help="write a commented starting plugin file NAME.py")
    new.add_argument("name", metavar="NAME", help="the plugin's (and model's) name, e.g. my_head")
    new.add_argument("--dir", default=".", help="folder to write it into (default: here)")

    ex = commands.add_parser("export", help="export a run's results: files, or `export mlflow RUN_DIR`")
    ex.add_argument("target", nargs="+", metavar="RUN_DIR", help="RUN_DIR, or mlflow RUN_DIR")
    ex.add_argument(
        "--tracking-uri",
        default=None,
        help="mlflow: where to log (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)",
    )
    ex.add_argument(
        "--experiment", default=None, help="mlflow: experiment name (default: the run folder's name)"
    )
    ex.add_argument(
        "--predictions", metavar="FILE.csv", help="out-of-fold predictions, one row per sample and job"
    )
    ex.add_argument("--json", metavar="PATH", help="per-fold metrics and summary as JSON")
    return parser


def _jobs(text: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number, got {text!r}") from None


def _comparison_options(parser) -> None:
    parser.add_argument(
        "--metric",
        default=None,
        choices=VERDICT_METRICS,
        help="primary metric of the verdict (default: auc, or the run's pre-registered plan's)",
    )
    parser.add_argument(
        "--rope",
        type=float,
        default=None,
        help="region of practical equivalence of the verdict metric, ± this (default: per metric, 0.01 "
        "for AUC and at least one sample's worth of a counted metric in one test fold)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="significance level, Holm across variants (default: 0.05, or the run's pre-registered plan's)",
    )
    parser.add_argument(
        "--min-effect",
        type=float,
        default=None,
        help="smallest difference of the verdict metric worth detecting, stated in advance: the design "
        "advice says what design detects it with 80%% power (default: the ROPE)",
    )
    parser.add_argument(
        "--nb-thresholds",
        default=",".join(f"{t:g}" for t in DEFAULT_NB_THRESHOLDS),
        metavar="T1,T2,...",
        help="threshold probabilities, declared in advance, at which the net benefit of each model and "
        "its paired difference with the baseline get corrected intervals (default: %(default)s)",
    )
    parser.add_argument(
        "--operating-point",
        default=DEFAULT_OPERATING_POINT,
        metavar="RULE",
        help="how each job's threshold is chosen on its inner validation predictions before its test "
        "fold is scored: sens@spec=0.90, spec@sens=0.90, youden, fixed=0.5 or none (default: %(default)s)",
    )
    parser.add_argument(
        "--calibrate",
        default="none",
        choices=RECALIBRATION_METHODS,
        help="recalibrate each job's probabilities by a map fitted on its inner validation predictions "
        "alone before the calibration, net benefit and operating point are scored (default: none, the "
        "models' own probabilities)",
    )
    parser.add_argument(
        "--details",
        action="store_true",
        help="also print the clinical tables (calibration, net benefit, operating point) in the terminal; "
        "the HTML and Markdown reports always hold them",
    )


def _positive_option(parser) -> None:
    parser.add_argument(
        "--positive",
        default=None,
        help="analyse for this class instead of the run's own positive class (two-class runs only)",
    )


def flag_names(parser, command: str) -> dict[str, str]:
    """Python option name -> the flag of ``command`` that sets it: how the command line names an
    option that a library error (an ``OptionError``) names as Python code spells it."""
    flags = {**parser.flags, **parser.commands[command].flags}
    return {**flags, **{field: flags[dest] for field, dest in _FLAG_DESTS.items() if dest in flags}}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["cvkit", *argv])
    # No emoji codes: a class or folder named ":cat:" is printed as written, not as a cat.
    console = Console(emoji=False)
    errors = Console(stderr=True, emoji=False)
    warnings.showwarning = lambda message, *a, **k: say(errors, f"cvkit: warning: {message}")
    terminated = []
    try:
        with _offline(getattr(args, "offline", False)), _sigterm_as_interrupt(terminated):
            return COMMANDS[args.command](args, console, errors)
    except CvkitError as exc:
        if args.debug:
            raise
        flag = flag_names(parser, args.command).get(exc.option) if isinstance(exc, OptionError) else None
        message = exc.naming(flag) if flag else str(exc)
        errors.print(
            escape.printable(f"cvkit: error: {message}"), markup=False, highlight=False, soft_wrap=True
        )
        return 2
    except KeyboardInterrupt:
        how = "terminated (SIGTERM)" if terminated else "interrupted"
        errors.print(f"cvkit: {how}; finished jobs are saved, rerun the same command to resume")
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)


def say(console: Console, text: str) -> None:
    """A plain line, as written (no markup, control characters shown). On a terminal it is wrapped
    between words, as the terminal would otherwise split a word at its edge; piped, it stays one
    line, for grep and logs."""
    console.print(escape.printable(text), markup=False, highlight=False, soft_wrap=not console.is_terminal)


@contextlib.contextmanager
def _sigterm_as_interrupt(terminated: list):
    """SIGTERM (``kill PID``, a batch system's time limit) stops the command as Ctrl-C does:
    finished jobs kept, workers ended, one line, exit 143. ``terminated`` records that it came."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread takes signals
        yield
        return

    def interrupt(signum, frame):
        if terminated:  # already stopping: a second SIGTERM must not cut the clean-up short
            return
        terminated.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _offline(offline: bool):
    """--offline: forbid downloads in this command and the worker processes it starts."""
    from .trainers import OFFLINE

    if not offline or os.environ.get(OFFLINE):
        yield
        return
    os.environ[OFFLINE] = "1"
    try:
        yield
    finally:
        del os.environ[OFFLINE]


def _evaluate(args, console, errors) -> int:
    from .api import loaded_data, record_warnings
    from .clinical import check_clinical_settings
    from .comparison import check_settings
    from .report import check_not_store, render_comparison, render_summary, write_json
    from .runner import JobProgress

    started = time.perf_counter()
    formats = _report_formats(args.report)  # a mistyped format stops here, not after the training
    registration = _apply_plan(args) if args.plan else None
    if args.vary:
        return _evaluate_grid(args, console, errors, started, registration, formats)
    check_settings(rope=args.rope, alpha=args.alpha, min_effect=args.min_effect)  # now, not after training
    sequential = _sequential_rule(args)
    check_clinical_settings(args.nb_thresholds, args.operating_point)
    if args.json and args.out:
        check_not_store(args.out, args.json)
    data, design, recipe, execution = _config_objects(args)
    with record_warnings() as loading:
        loaded = loaded_data(data)
    dataset = loaded.source
    chosen = "named" if args.positive else "default: the minority class; set it with --positive"
    say(errors, f"positive class: {dataset.positive_name} ({chosen}); labels {dataset.label_mapping}")
    results = evaluate(
        args.variants,
        baseline=args.baseline,
        data=loaded,
        design=design,
        recipe=recipe,
        execution=execution,
        hyperparams=_parse_params(args.param),
        out=args.out,
        reports_dir=args.reports_dir,
        progress=JobProgress(errors, epochs=recipe.epochs),
        command=args.command_line,
        caveats=loading,
        registration=registration,
        until_decided=sequential,
    )
    report = _compare_as_asked(results, args)
    render_summary(results, console)
    render_comparison(report, console, details=args.details)
    counts = results.counts
    console.print(
        f"{counts.trained} jobs trained, {counts.resumed} resumed from this run, "
        f"{counts.reused} reused from other runs in {time.perf_counter() - started:.1f} s "
        f"({results.concurrency.reason}); results in {escape.rich(results.run_dir)}",
        highlight=False,
    )
    if args.json:
        write_json(results, args.json, report)
    _write_documents(results, report, formats, console)
    if args.mlflow is not None:
        _export_mlflow(results, args.mlflow, None, console, report)
    return 0


def _report_formats(text: str) -> list[str]:
    """``--report``'s documents: ``none`` is none; an unknown format is refused in one line."""
    from .report import check_formats

    formats = [] if text == "none" else [f.strip() for f in text.split(",") if f.strip()]
    check_formats(formats)
    return formats


def _config_objects(args):
    """The run's config objects (``Data``, ``Design``, ``TrainConfig``, ``Execution``) from the flags."""
    return tuple(
        config(
            **{field.name: getattr(args, _FLAG_DESTS.get(field.name, field.name)) for field in _flags(config)}
        )
        for config in (Data, Design, TrainConfig, Execution)
    )


def _evaluate_grid(args, console, errors, started, registration, formats) -> int:
    """``evaluate --vary`` (or a plan with a grid): every recipe cell as its own run, then the
    across-recipe analysis. ``formats`` (``--report``'s) are the documents written; the grid's
    data, ``grid.json`` and ``grid-predictions.csv``, are written whatever they are, as a single
    run's store is."""
    from .comparison import check_settings
    from .multiverse import analyse_grid, cell_name, grid_record, not_sequential, parse_vary
    from .report import render_grid, write_grid_predictions, write_grid_reports
    from .runner import JobProgress

    vary = parse_vary(args.vary)  # a bad grid stops here, before any data is read
    if args.until_decided:
        raise not_sequential("--until-decided")
    check_settings(rope=args.rope, alpha=args.alpha, min_effect=args.min_effect)
    data, design, recipe, execution = _config_objects(args)
    fixed = [name for name in vary if getattr(recipe, name) != getattr(TrainConfig, name)]
    if fixed:
        raise OptionError("vary", f"{', '.join(fixed)} is both varied and fixed by its own flag; drop one")
    # evaluate_grid sets the display's epochs to each cell's own (a grid may vary them).
    grid = evaluate(
        args.variants,
        vary=vary,
        out=args.out,
        reports_dir=args.reports_dir,
        recipe=recipe,
        baseline=args.baseline,
        data=data,
        design=design,
        execution=execution,
        hyperparams=_parse_params(args.param),
        progress=JobProgress(errors, epochs=recipe.epochs),
        command=args.command_line,
        registration=registration,
    )
    report = analyse_grid(grid, metric=args.metric, alpha=args.alpha, rope=args.rope)
    record = grid_record(report)
    render_grid(record, console)
    counts = grid.counts
    console.print(
        f"{len(grid.cells)} recipe cells: {counts['trained']} jobs trained, {counts['resumed']} resumed, "
        f"{counts['reused']} reused in {time.perf_counter() - started:.1f} s; results in "
        f"{escape.rich(grid.run_dir)}",
        highlight=False,
    )
    written = write_grid_reports(record, grid.run_dir, formats)
    written["csv"] = grid.run_dir / "grid-predictions.csv"
    write_grid_predictions([(cell_name(cell), cell, results) for cell, results in grid.cells], written["csv"])
    console.print("reports: " + ", ".join(escape.rich(p) for p in written.values()), highlight=False)
    if args.json:
        from .files import write_text

        write_text(args.json, json.dumps(record, indent=1, allow_nan=False))
    return 0


def _verify(args, console, errors) -> int:
    from .api import verify
    from .report import render_verification

    started = time.perf_counter()
    verification = verify(args.run_dir, jobs=args.jobs, seed=args.seed)
    render_verification(verification, console)
    console.print(
        f"{len(verification.checks)} of {verification.n_done} finished jobs trained again in "
        f"{time.perf_counter() - started:.1f} s",
        highlight=False,
    )
    return 0 if verification.ok else 1


def _write_documents(results, report, formats, console, open_html=False) -> None:
    from .report import write_reports

    if not formats:
        return
    written = write_reports(results, report, formats)
    console.print("reports: " + ", ".join(escape.rich(p) for p in written.values()), highlight=False)
    if open_html and "html" in written:
        import webbrowser

        if not webbrowser.open(written["html"].resolve().as_uri()):
            console.print(f"no browser found; open {escape.rich(written['html'])} yourself", highlight=False)


def _report(args, console, errors) -> int:
    from .report import FORMATS, render_comparison, render_summary, write_json
    from .results import Results

    results = Results(args.run_dir, positive=args.positive)
    report = _compare_as_asked(results, args)
    render_summary(results, console)
    render_comparison(report, console, details=args.details)
    if args.json:
        write_json(results, args.json, report)
    formats = [f for f, chosen in zip(FORMATS, (args.html, args.md, args.latex)) if chosen] or list(FORMATS)
    _write_documents(results, report, formats, console, open_html=args.open)
    return 0


def _compare(args, console, errors) -> int:
    from .report import render_comparison, write_json
    from .results import Results

    if len(args.run_dir) > 1:
        return _compare_runs(args, console)
    results = Results(args.run_dir[0], positive=args.positive)
    report = _compare_as_asked(results, args, baseline=args.baseline)
    render_comparison(report, console, details=args.details)
    if args.json:
        write_json(results, args.json, report)
    return 0


def _compare_runs(args, console) -> int:
    """Friedman/Nemenyi over runs on different data sets, and the critical-difference diagram."""
    from .comparison import compare_runs
    from .report import check_not_store, render_ranking, write_cd_diagram, write_ranking_json
    from .results import Results

    for run_dir in args.run_dir:  # before any work: an output that names a run's store would end it
        for output in filter(None, (args.cd_diagram, args.json)):
            check_not_store(run_dir, output)
    runs = [Results(path, positive=args.positive) for path in args.run_dir]
    ranking = compare_runs(runs, metric=args.metric or "auc")
    render_ranking(ranking, console)
    path = write_cd_diagram(ranking, args.cd_diagram)
    console.print(f"critical-difference diagram: {path}", highlight=False)
    if args.json:
        write_ranking_json(ranking, args.json)
    return 0


def _compare_as_asked(results, args, **more):
    """``compare`` with the analysis options every command that reports shares."""
    from .comparison import compare

    return compare(
        results, metric=args.metric, rope=args.rope, alpha=args.alpha, min_effect=args.min_effect,
        nb_thresholds=args.nb_thresholds, operating_point=args.operating_point, calibrate=args.calibrate,
        **more,
    )  # fmt: skip


def _plan(args, console, errors) -> int:
    from .planning import grid_power, plan_from_priors, plan_from_run, write_analysis_plan
    from .report import check_not_store, render_plan, write_plan_json
    from .results import Results

    if args.jobs < 1:
        raise CvkitError(f"--jobs must be at least 1, got {args.jobs}")
    if args.from_run:
        priors = [
            flag
            for flag, value in (("--fold-sd", args.fold_sd), ("--seconds-per-job", args.seconds_per_job))
            if value is not None
        ]
        if priors:
            raise CvkitError(
                f"{' and '.join(priors)} state priors; with --from RUN_DIR the run's own figures are used"
            )
        if args.json:
            check_not_store(args.from_run, args.json)
        results = Results(args.from_run)
        plan = plan_from_run(
            results,
            min_effect=args.min_effect,
            metric=args.metric,
            alpha=args.alpha,
            power=args.power,
        )
    else:
        results = None
        missing = [
            flag
            for flag, value in (("--fold-sd", args.fold_sd), ("--min-effect", args.min_effect))
            if value is None
        ]
        if missing:
            raise CvkitError(f"planning from priors needs {' and '.join(missing)} (or plan --from RUN_DIR)")
        plan = plan_from_priors(
            n_samples=args.samples, fold_sd=args.fold_sd, seed_sd=args.seed_sd, folds=args.folds,
            n_variants=max(1, len(args.variant)), min_effect=args.min_effect, metric=args.metric,
            alpha=args.alpha, power=args.power, seconds_per_job=args.seconds_per_job,
        )  # fmt: skip
    grid = None
    if args.vary:
        from .multiverse import parse_vary

        grid = parse_vary(args.vary)
    render_plan(plan, console, jobs=args.jobs)
    # Before anything is written: the design to pre-register (refused in one line when there is
    # none); a grid's power is stated for it, else for the recommended design.
    design = _registered_design(args, plan, grid) if args.write else plan.recommended
    power = None if grid is None or design is None else grid_power(plan, design, grid)
    if power is not None:
        from .multiverse import grid_cost

        console.print(escape.rich(grid_cost(power, jobs=args.jobs)), highlight=False)
    if args.json:
        write_plan_json(plan, args.json, grid=power)
        console.print(f"plan -> {escape.rich(args.json)}", highlight=False)
    if args.write:
        registered = _pre_register(args, plan, results, grid, design)
        write_analysis_plan(registered, args.write)
        say(
            console,
            f"pre-registered analysis plan -> {args.write} (sha256 {registered.sha256[:12]}); run it with "
            f"cvkit evaluate --plan {args.write} --data DATA",
        )
    return 0


def _sequential_rule(args):
    """--until-decided: the rule, on the verdict's metric and settings; --repeats becomes its maximum."""
    from .planning import SequentialRule

    if not args.until_decided:
        if args.max_repeats is not None:
            raise CvkitError("--max-repeats applies to --until-decided only")
        return None
    if args.repeats != Design.repeats:
        raise CvkitError(
            "--until-decided chooses the repeats itself: give the most with --max-repeats, not --repeats"
        )
    rule = SequentialRule(
        max_repeats=10 if args.max_repeats is None else args.max_repeats, metric=args.metric or "auc",
        alpha=0.05 if args.alpha is None else args.alpha, min_effect=args.min_effect, rope=args.rope,
    )  # fmt: skip
    args.repeats = rule.max_repeats
    return rule


def _apply_plan(args):
    """``evaluate --plan``: the plan's models, design and analysis settings become the run's; a flag
    that asks for something else is refused (an analysis that differs from the plan is exploratory:
    run it afterwards with cvkit compare)."""
    from .multiverse import check_registered_grid, parse_vary
    from .planning import read_analysis_plan

    registration = read_analysis_plan(args.plan)
    design = dict(registration.design)
    planned_grid = design.pop("vary", None)
    if args.vary:  # without --vary the plan's grid (or single recipe) runs
        asked = f"--vary {' --vary '.join(args.vary)}"
        check_registered_grid(planned_grid, parse_vary(args.vary), where=asked, plan=args.plan)
    args.vary = planned_grid
    if design.pop("sequential", False):  # the plan's repeats are the sequential rule's maximum
        most = design.pop("repeats")
        if args.max_repeats not in (None, most):
            raise CvkitError(
                f"{args.plan} fixes --max-repeats {most}; this command asks for {args.max_repeats}"
            )
        args.until_decided, args.max_repeats = True, most
    planned = {
        "variants": registration.models["variants"],
        "baseline": registration.models["baseline"],
        **design,
        **{k: v for k, v in registration.analysis.items() if k in ("metric", "alpha", "rope", "min_effect")},
    }
    planned.setdefault("rope", None)  # the metric's own ROPE
    defaults = {
        "variants": [],
        "baseline": TrainConfig.backbone,
        **{field.name: field.default for field in fields(Design)},
        "metric": None,
        "alpha": None,
        "rope": None,
        "min_effect": None,
    }
    differ = []
    for key, value in planned.items():
        asked = getattr(args, key)
        if asked != defaults[key] and asked != value:
            flag = "VARIANT ..." if key == "variants" else f"--{key.replace('_', '-')}"
            shown = " ".join(asked) if key == "variants" else asked
            differ.append(f"{flag} {shown} (plan: {' '.join(value) if key == 'variants' else value})")
        setattr(args, key, value)
    if differ:
        raise CvkitError(
            f"{args.plan} fixes what this command changes: {'; '.join(differ)}. Run the plan as written; "
            "analyse otherwise afterwards with cvkit compare RUN (labelled exploratory)"
        )
    return registration


def _registered_design(args, plan, grid):
    """The design ``cvkit plan --write`` fixes: sequential (``--until-decided``), ``--design``, or
    the recommended one."""
    from .planning import plan_design, plan_sequential

    if args.until_decided:
        if grid is not None:
            from .multiverse import not_sequential

            raise not_sequential("--until-decided")
        if args.design is not None:
            raise CvkitError("--design fixes a fixed design; with --until-decided give --max-repeats")
        return plan_sequential(plan, args.max_repeats)
    if args.design is None:
        if plan.recommended is None or plan.recommended.data_factor != 1:
            raise CvkitError(
                "no design on this data reaches the target power: choose the one to pre-register with "
                "--design KxRxS (e.g. --design 5x3x2)"
            )
        return plan.recommended
    try:
        k, r, s = (int(part) for part in args.design.lower().split("x"))
    except ValueError:
        raise CvkitError(f"--design {args.design!r}: write folds x repeats x seeds, e.g. 5x3x2") from None
    if k < 2 or r < 1 or s < 1:
        raise CvkitError(f"--design {args.design!r}: needs folds >= 2, repeats >= 1, seeds >= 1")
    matches = [
        d for d in plan.designs if (d.n_folds, d.n_repeats, d.n_seeds, d.data_factor) == (k, r, s, 1.0)
    ]
    return matches[0] if matches else plan_design(plan, k, r, s)


def _pre_register(args, plan, results, grid, design):
    """The analysis plan ``cvkit plan --write`` fixes: ``design`` (``_registered_design``'s), the
    models from the flags or the earlier run, and the recipe grid of ``--vary`` if any."""
    from .planning import analysis_plan

    recipe = (results.recipe or {}) if results is not None else {}
    variants = args.variant or recipe.get("variants") or []
    baseline = args.baseline or recipe.get("baseline")
    if not variants or not baseline:
        raise CvkitError(
            "--write needs the models to fix: pass --baseline NAME and --variant PLUGIN (repeatable)"
        )
    return analysis_plan(
        plan,
        design,
        baseline=_portable(baseline),
        variants=[_portable(v) for v in variants],
        rope=args.rope,
        seed=recipe.get("seed", 0),
        vary=grid,
    )


def _portable(spec: str) -> str:
    """A plugin file below the working folder as a relative path, so that the plan file travels
    with the project; built-in names and other paths as they are."""
    path = Path(spec)
    if path.is_absolute() and path.is_file():
        with contextlib.suppress(ValueError):
            return path.relative_to(Path.cwd()).as_posix()
    return spec


def _export(args, console, errors) -> int:
    from .report import write_json, write_predictions_csv
    from .results import Results

    if args.target[0] == "mlflow":
        if len(args.target) != 2:
            raise CvkitError("write: cvkit export mlflow RUN_DIR [--tracking-uri URI]")
        return _export_mlflow(Results(args.target[1]), args.tracking_uri, args.experiment, console)
    if len(args.target) != 1:
        raise CvkitError(f"export takes one RUN_DIR, got {' '.join(args.target)}")
    if not (args.predictions or args.json):
        raise CvkitError(
            "nothing to export: pass --predictions FILE.csv and/or --json PATH, or use "
            "cvkit export mlflow RUN_DIR"
        )
    results = Results(args.target[0])
    if args.predictions:
        rows = write_predictions_csv(results, args.predictions)
        console.print(f"{rows} prediction rows -> {escape.rich(args.predictions)}", highlight=False)
    if args.json:
        write_json(results, args.json)
        console.print(f"summary -> {escape.rich(args.json)}", highlight=False)
    return 0


def _export_mlflow(results, tracking_uri, experiment, console, comparison=None) -> int:
    from .comparison import compare
    from .report import export_mlflow, resolve_tracking_uri

    comparison = comparison or compare(results)
    uri = resolve_tracking_uri(tracking_uri or None)
    ids = export_mlflow(results, comparison, tracking_uri=uri, experiment=experiment)
    name = experiment or results.run_dir.resolve().name
    view = uri if uri.startswith(("http:", "https:")) else f"mlflow ui --backend-store-uri {uri}"
    console.print(
        escape.printable(
            f"MLflow: {len(ids)} runs logged ({', '.join(results.model_names)}) to {uri}, experiment "
            f"{name}; view them: {view}"
        ),
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    return 0


def _plugins(args, console, errors) -> int:
    from rich.table import Table
    from rich.text import Text

    from .trainers import BACKBONES, BUILTINS, describe_plugin, example_plugins

    examples = example_plugins()
    table = Table(box=None, show_header=False, pad_edge=False)
    for name, path in examples.items():
        table.add_row(Text(name, style="bold"), Text(describe_plugin(path)))
    console.print("Example plugins (run one by name, e.g. cvkit evaluate fc_attention):", highlight=False)
    console.print(table)
    folder = next(iter(examples.values())).parent
    console.print(f"Their files, to copy and edit: {escape.rich(folder)}", highlight=False, soft_wrap=True)
    others = [name for name in BUILTINS if name not in BACKBONES]
    console.print(
        f"Built-in backbones (--baseline NAME, or as a variant): {', '.join(BACKBONES)}, "
        f"timm:<name> (needs timm); other built-in models: {', '.join(others)}",
        highlight=False,
    )
    console.print("Start your own: cvkit new-plugin NAME", highlight=False)
    return 0


def _new_plugin(args, console, errors) -> int:
    from .trainers import BUILTINS, write_plugin_template

    path = write_plugin_template(args.name, args.dir, taken=BUILTINS)
    console.print(
        f"wrote {escape.rich(path)}; run it against the baseline: cvkit evaluate {escape.rich(path)} "
        "--folds 5 --repeats 3",
        highlight=False,
        soft_wrap=True,
    )
    return 0


def _parse_params(items) -> dict:
    params: dict[str, dict] = {}
    for item in items:
        target, sep, raw = item.partition("=")
        model, dot, name = target.partition(".")
        if not (sep and dot and model and name):
            raise CvkitError(f"--param {item!r}: write MODEL.NAME=VALUE, e.g. mlp_head.hidden=100")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params.setdefault(model, {})[name] = value
    return params


COMMANDS = {
    "evaluate": _evaluate,
    "compare": _compare,
    "report": _report,
    "plan": _plan,
    "export": _export,
    "verify": _verify,
    "plugins": _plugins,
    "new-plugin": _new_plugin,
}


def run() -> None:
    """The ``cvkit`` command (tests call ``main`` in their own process)."""
    code = main()
    # The interpreter's last full collection walks torch's million objects for about a second.
    gc.freeze()
    stray = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if any(t.is_alive() for t in stray):
        # A plugin loaded here left a thread running: the interpreter would wait for it forever.
        names = ", ".join(t.name for t in stray if t.is_alive())
        print(
            f"cvkit: warning: a plugin left threads running ({names}); exiting without them", file=sys.stderr
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
