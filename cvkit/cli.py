"""The ``cvkit`` command line: ``evaluate``, ``compare``, ``report``, ``export``, ``verify``,
``plugins`` and ``new-plugin``."""

from __future__ import annotations

import argparse
import contextlib
import gc
import inspect
import json
import math
import os
import shlex
import signal
import sys
import threading
import time
import warnings

from rich.console import Console

from . import escape
from ._version import __version__
from .api import evaluate
from .errors import CvkitError
from .runner import EXECUTORS
from .stats import DEFAULT_NB_THRESHOLDS, DEFAULT_OPERATING_POINT, RECALIBRATION_METHODS, VERDICT_METRICS
from .trainers import AUGMENTATIONS, CLASS_WEIGHTS, IMPUTATIONS, PRECISIONS, SELECTION_RULES, STEMS

# The command line's defaults are evaluate's (which takes the recipe's from TrainConfig): one set.
EVALUATE_DEFAULTS = {name: p.default for name, p in inspect.signature(evaluate).parameters.items()}


class _Parser(argparse.ArgumentParser):
    """argparse that answers a mistake with the one useful line first, then where the usage is,
    instead of the whole usage (some 20 lines) above it. Subcommands inherit the class."""

    def error(self, message: str):
        self.exit(2, escape.printable(f"cvkit: error: {message}") + f"\nrun {self.prog} --help for usage\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cvkit", description="Does this variant really beat the baseline?")
    parser.add_argument("--version", action="version", version=f"cvkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", required=True)

    ev = commands.add_parser("evaluate", help="cross-validate variants against the baseline")
    ev.add_argument(
        "variants", nargs="*", help="plugin files (or built-in names) to compare with the baseline"
    )
    ev.add_argument(
        "--data",
        default=EVALUATE_DEFAULTS["data"],
        help="demo (built-in synthetic set), a MedMNIST .npz, an image folder or a CSV manifest",
    )
    ev.add_argument(
        "--baseline",
        default=EVALUATE_DEFAULTS["baseline"],
        help="resnet18 (default), resnet34/50/101, densenet121, timm:NAME, logreg or a plugin file",
    )
    ev.add_argument("--folds", type=int, default=EVALUATE_DEFAULTS["folds"])
    ev.add_argument("--repeats", type=int, default=EVALUATE_DEFAULTS["repeats"])
    ev.add_argument("--seeds", type=int, default=EVALUATE_DEFAULTS["seeds"], help="training seeds per split")
    ev.add_argument(
        "--seed", type=int, default=EVALUATE_DEFAULTS["seed"], help="master seed of splits and training seeds"
    )
    ev.add_argument("--epochs", type=int, default=EVALUATE_DEFAULTS["epochs"])
    ev.add_argument("--batch-size", type=int, default=EVALUATE_DEFAULTS["batch_size"])
    ev.add_argument("--lr", type=float, default=EVALUATE_DEFAULTS["lr"])
    ev.add_argument("--weight-decay", type=float, default=EVALUATE_DEFAULTS["weight_decay"])
    ev.add_argument(
        "--select",
        default=EVALUATE_DEFAULTS["select"],
        choices=SELECTION_RULES,
        help="checkpoint selection rule",
    )
    ev.add_argument("--class-weight", default=EVALUATE_DEFAULTS["class_weight"], choices=CLASS_WEIGHTS)
    ev.add_argument("--augment", default=EVALUATE_DEFAULTS["augment"], choices=AUGMENTATIONS)
    ev.add_argument(
        "--stem",
        default=EVALUATE_DEFAULTS["stem"],
        choices=STEMS,
        help="ResNet stem: torchvision's standard one or a 3x3 stride-1 small-image stem",
    )
    ev.add_argument(
        "--weights",
        default=None,
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
        default=EVALUATE_DEFAULTS["val_fraction"],
        help="inner validation share of each training fold",
    )
    ev.add_argument(
        "--positive", default=None, help="name of the positive class (default: the minority class)"
    )
    ev.add_argument("--image-size", type=int, default=None, help="resize images to N x N")
    ev.add_argument(
        "--intensity-window",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="bring 16-bit, float and DICOM (after rescale) grey values to 8 bits through this fixed "
        "window (LOW -> 0, HIGH -> 255) instead of per-image min-max (DICOM: the file's own window)",
    )
    ev.add_argument(
        "--extra",
        default=None,
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
        default=EVALUATE_DEFAULTS["impute"],
        choices=IMPUTATIONS,
        help="fill missing extra values with the mean or median of each training fold",
    )
    ev.add_argument(
        "--demo-extra-signal",
        type=float,
        default=None,
        metavar="S",
        help="demo data only: how informative its extra features are (0 = pure noise, default 1)",
    )
    ev.add_argument("--device", default=EVALUATE_DEFAULTS["device"], help="auto, cpu, cuda or cuda:N")
    ev.add_argument(
        "--jobs",
        default=EVALUATE_DEFAULTS["jobs"],
        type=_jobs,
        help="trainings run side by side (default auto: from the cores or GPU, model and memory)",
    )
    ev.add_argument(
        "--threads-per-job",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads of each training (default 1; changes the predictions' last bits)",
    )
    ev.add_argument(
        "--executor",
        default=EVALUATE_DEFAULTS["executor"],
        choices=EXECUTORS,
        help="; ".join(
            f"{name}: {executor.summary}" + " (default)" * (name == "local")
            for name, executor in EXECUTORS.items()
        ),
    )
    ev.add_argument(
        "--address", default=None, help="--executor ray: the cluster's HOST:PORT (default: start a local one)"
    )
    ev.add_argument(
        "--cpus-per-job", type=float, default=None, help="--executor ray: CPUs each task declares"
    )
    ev.add_argument(
        "--gpus-per-job",
        type=float,
        default=EVALUATE_DEFAULTS["gpus_per_job"],
        help="--executor ray: GPUs each task declares (0.25 ...)",
    )
    ev.add_argument(
        "--retries",
        type=int,
        default=EVALUATE_DEFAULTS["retries"],
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
        default=EVALUATE_DEFAULTS["precision"],
        choices=PRECISIONS,
        help="auto: bf16 autocast on a GPU that supports it, fp32 on CPU",
    )
    ev.add_argument("--out", default=None, help="run folder (default: reports/<models>-<data>-<hash>)")
    ev.add_argument(
        "--reports-dir", default=EVALUATE_DEFAULTS["reports_dir"], help="where default run folders go"
    )
    ev.add_argument("--json", default=None, metavar="PATH", help="also write a machine-readable summary")
    ev.add_argument(
        "--report",
        default="html,md,latex",
        metavar="FORMATS",
        help="reports written into the run folder: any of html,md,latex, or none",
    )
    ev.add_argument(
        "--holdout",
        default=None,
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
        default=EVALUATE_DEFAULTS["inner_folds"],
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
        "--metric", default="auc", choices=VERDICT_METRICS, help="primary metric of the verdict"
    )
    parser.add_argument(
        "--rope",
        type=float,
        default=None,
        help="region of practical equivalence of the verdict metric, ± this (default: per metric, 0.01 "
        "for AUC and at least one sample's worth of a counted metric in one test fold)",
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (Holm across variants)")
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


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = build_parser().parse_args(argv)
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
        errors.print(escape.printable(f"cvkit: error: {exc}"), markup=False, highlight=False, soft_wrap=True)
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
    from .api import record_warnings
    from .clinical import check_clinical_settings
    from .comparison import check_settings, compare
    from .data import load_data
    from .report import check_not_store, render_comparison, render_summary, write_json
    from .runner import JobProgress

    started = time.perf_counter()
    check_settings(rope=args.rope, alpha=args.alpha, min_effect=args.min_effect)  # now, not after training
    check_clinical_settings(args.nb_thresholds, args.operating_point)
    if args.json and args.out:
        check_not_store(args.out, args.json)
    options = {} if args.image_size is None else {"image_size": args.image_size}
    if args.intensity_window is not None:
        options["intensity_window"] = tuple(args.intensity_window)
    if args.demo_extra_signal is not None:
        if args.data != "demo":
            raise CvkitError("--demo-extra-signal applies to --data demo only")
        if not math.isfinite(args.demo_extra_signal):
            raise CvkitError(f"--demo-extra-signal must be a finite number, got {args.demo_extra_signal}")
        options["extra_signal"] = args.demo_extra_signal
    with record_warnings() as loading:
        dataset = load_data(args.data, positive=args.positive, **options)
    chosen = "named" if args.positive else "default: the minority class; set it with --positive"
    say(errors, f"positive class: {dataset.positive_name} ({chosen}); labels {dataset.label_mapping}")
    results = evaluate(
        args.variants,
        data=dataset,
        baseline=args.baseline,
        folds=args.folds,
        repeats=args.repeats,
        seeds=args.seeds,
        seed=args.seed,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        select=args.select,
        class_weight=args.class_weight,
        augment=args.augment,
        stem=args.stem,
        weights=args.weights,
        val_fraction=args.val_fraction,
        device=args.device,
        out=args.out,
        reports_dir=args.reports_dir,
        extra=args.extra,
        impute=args.impute,
        nested=args.nested,
        inner_folds=args.inner_folds,
        holdout=args.holdout,
        hyperparams=_parse_params(args.param),
        jobs=args.jobs,
        threads_per_job=args.threads_per_job,
        precision=args.precision,
        executor=args.executor,
        address=args.address,
        cpus_per_job=args.cpus_per_job,
        gpus_per_job=args.gpus_per_job,
        retries=args.retries,
        dedupe=args.dedupe,
        progress=JobProgress(errors, epochs=args.epochs),
        command=args.command_line,
        caveats=loading,
    )
    report = compare(
        results,
        metric=args.metric,
        rope=args.rope,
        alpha=args.alpha,
        min_effect=args.min_effect,
        nb_thresholds=args.nb_thresholds,
        operating_point=args.operating_point,
        calibrate=args.calibrate,
    )
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
    formats = [] if args.report == "none" else [f.strip() for f in args.report.split(",") if f.strip()]
    _write_documents(results, report, formats, console)
    if args.mlflow is not None:
        _export_mlflow(results, args.mlflow, None, console, report)
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
    from .comparison import compare
    from .report import FORMATS, render_comparison, render_summary, write_json
    from .results import Results

    results = Results(args.run_dir, positive=args.positive)
    report = compare(
        results,
        metric=args.metric,
        rope=args.rope,
        alpha=args.alpha,
        min_effect=args.min_effect,
        nb_thresholds=args.nb_thresholds,
        operating_point=args.operating_point,
        calibrate=args.calibrate,
    )
    render_summary(results, console)
    render_comparison(report, console, details=args.details)
    if args.json:
        write_json(results, args.json, report)
    formats = [f for f, chosen in zip(FORMATS, (args.html, args.md, args.latex)) if chosen] or list(FORMATS)
    _write_documents(results, report, formats, console, open_html=args.open)
    return 0


def _compare(args, console, errors) -> int:
    from .comparison import compare
    from .report import render_comparison, write_json
    from .results import Results

    if len(args.run_dir) > 1:
        return _compare_runs(args, console)
    results = Results(args.run_dir[0], positive=args.positive)
    report = compare(
        results,
        metric=args.metric,
        rope=args.rope,
        alpha=args.alpha,
        baseline=args.baseline,
        min_effect=args.min_effect,
        nb_thresholds=args.nb_thresholds,
        operating_point=args.operating_point,
        calibrate=args.calibrate,
    )
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
    ranking = compare_runs(runs, metric=args.metric)
    render_ranking(ranking, console)
    path = write_cd_diagram(ranking, args.cd_diagram)
    console.print(f"critical-difference diagram: {path}", highlight=False)
    if args.json:
        write_ranking_json(ranking, args.json)
    return 0


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
