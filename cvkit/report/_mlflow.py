"""Export a run to MLflow: one MLflow run per model, in an experiment named after the run folder.

Each MLflow run holds the model's parameters (recipe, design, hyper-parameters, plugin and data
digests), its per-fold metrics (step = repeat x folds + fold) and summary metrics (mean and the
corrected 95% interval), the verdict against the baseline as tags, and as artifacts the run's
HTML report and the model's out-of-fold predictions. Exporting the same run again replaces the
earlier export instead of duplicating it.

Where to: the given tracking URI, else MLflow's own default (``MLFLOW_TRACKING_URI``, else
``sqlite:///mlflow.db`` in the current folder in MLflow 3). MLflow 3 refuses file stores
(``file:///.../mlruns``) unless ``MLFLOW_ALLOW_FILE_STORE`` is set; a user who names one gets it,
with the switch set for this export only and a warning that ``mlflow ui`` will need it too.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path
from urllib.parse import urlparse

from ..errors import ConfigError
from ..stats import METRICS
from ._export import check_not_store

INSTALL = 'pip install -e ".[mlflow]"'
ALLOW_FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"
SQLITE = "sqlite:///"  # then the database's path: relative, or absolute with one more slash


def resolve_tracking_uri(given: str | None = None) -> str:
    """The tracking URI an export writes to: ``given``, else MLflow's default resolved here."""
    if given:
        return given
    try:
        import mlflow
    except ImportError:
        raise ConfigError(f"MLflow export needs MLflow, which is not installed: {INSTALL}") from None
    return mlflow.get_tracking_uri()


def is_file_store(uri: str) -> bool:
    """A local folder store (``file:`` or a plain path), which MLflow 3 keeps behind a switch."""
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or len(scheme) == 1  # one letter: a Windows drive, C:\...


def export_mlflow(
    results, comparison, *, tracking_uri: str | None = None, experiment: str | None = None
) -> list[str]:
    """Log a run to MLflow: one MLflow run per model, with its metrics, parameters, the verdicts
    and the reports as artifacts.

    Parameters
    ----------
    results : Results
        The run.
    comparison : ComparisonReport
        Its comparison, whose verdicts are logged.
    tracking_uri : str or None, default=None
        Where to log; None: MLflow's own default.
    experiment : str or None, default=None
        The experiment name; None: the run folder's name.

    Returns
    -------
    list of str
        The MLflow run ids.

    Raises
    ------
    ConfigError
        MLflow not installed, or a tracking server that refuses the export.
    """
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:
        raise ConfigError(f"MLflow export needs MLflow, which is not installed: {INSTALL}") from None
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith(SQLITE):  # MLflow would put its tables into the run's own database
        check_not_store(results.run_dir, uri[len(SQLITE) :])
    _check_server(uri)
    try:
        with _file_store_allowed(uri):
            return _export(results, comparison, uri, experiment)
    except MlflowException as exc:  # an unreachable server, a refused store: one line, not a traceback
        raise ConfigError(f"MLflow ({uri}): {exc.message}") from None
    except ImportError as exc:  # mlflow-skinny has no SQL or server stores
        raise ConfigError(
            f"MLflow ({uri}): this store needs the full mlflow package ({exc}): {INSTALL}"
        ) from None


def _check_server(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when nothing listens at a tracking
    server's address. Skipped when a proxy carries the requests: only the proxy knows then."""
    parts = urlparse(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    if parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(parts.hostname):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(
            f"MLflow: no tracking server answers at {uri} ({exc.strerror or exc}); start it "
            "(mlflow server --host HOST --port PORT) or pass another --tracking-uri"
        ) from None


@contextlib.contextmanager
def _file_store_allowed(uri: str):
    """Let MLflow 3 open a file store the user asked for, in this process and for this export only."""
    if not is_file_store(uri) or os.environ.get(ALLOW_FILE_STORE):
        yield
        return
    warnings.warn(
        f"MLflow 3 keeps file stores such as {uri} in maintenance mode; cvkit writes this one, and "
        f"`mlflow ui --backend-store-uri {uri}` reads it only with {ALLOW_FILE_STORE}=true. "
        "A sqlite:///PATH/mlflow.db store needs no switch",
        stacklevel=3,
    )
    os.environ[ALLOW_FILE_STORE] = "true"
    try:
        yield
    finally:
        del os.environ[ALLOW_FILE_STORE]


def _export(results, comparison, tracking_uri, experiment) -> list[str]:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from ..comparison import cv_interval
    from ._documents import write_reports
    from ._export import write_predictions_csv
    from ._serialise import report_record

    client = MlflowClient(tracking_uri=tracking_uri)
    name = experiment or results.run_dir.resolve().name
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found else client.create_experiment(name)
    identity = str(results.run_dir.resolve())
    for old in client.search_runs([experiment_id], f"tags.`cvkit.run_dir` = '{_quoted(identity)}'"):
        client.delete_run(old.info.run_id)

    record = report_record(comparison)
    verdicts, registration = record["comparisons"], record["registration"]
    run, design, config = results.run, results.run["design"], results.run["config"]
    steps = {
        (r, f): r * design["folds"] + f for r in range(design["repeats"]) for f in range(design["folds"])
    }
    models = {m["name"]: m for m in results.models}
    ids = []
    for model in results.model_names:
        tags = {
            "mlflow.runName": model,
            "cvkit.run_dir": identity,
            "cvkit.model": model,
            "cvkit.role": "baseline" if model == results.baseline else "variant",
            "cvkit.positive_class": results.positive_name,
            "cvkit.version": run["cvkit_version"],
        }
        if registration is not None:  # "pre-registered" or "exploratory", and the plan it refers to
            tags["cvkit.analysis"] = registration["status"]
            tags["cvkit.plan_sha256"] = registration["sha256"]
            tags["cvkit.analysis_text"] = registration["sentence"][:5000]
        if model in verdicts:
            c = verdicts[model]
            tags.update(
                {
                    "cvkit.verdict": c["verdict"],
                    "cvkit.verdict_metric": c["metric"],
                    "cvkit.baseline": c["baseline"],
                    "cvkit.p_holm": f"{c['verdict_test']['pvalue_holm']:.4g}",
                    "cvkit.ci": f"{c['interval_label']} [{c['verdict_test']['ci_low']:+.4f}, "
                    f"{c['verdict_test']['ci_high']:+.4f}]",
                    "cvkit.verdict_text": c["paragraph"][:5000],
                }
            )
        params = {
            **{f"config.{k}": v for k, v in config.items()},
            **{f"design.{k}": v for k, v in design.items()},
            **{f"hyperparam.{k}": v for k, v in models[model]["hyperparams"].items()},
            "plugin.origin": models[model]["origin"],
            "plugin.digest": models[model]["digest"],
            "data.name": run["data"]["name"],
            "data.fingerprint": run["data"]["fingerprint"],
            "data.n_samples": run["data"]["n_samples"],
        }
        now = int(time.time() * 1000)
        metrics = []
        rows = results.metrics[results.metrics.model == model]
        for row in rows.itertuples():
            step = steps[(row.repeat, row.fold)] + row.seed_index * len(steps)
            metrics += [
                Metric(f"fold.{m}", float(getattr(row, m)), now, step)
                for m in METRICS
                if _finite(getattr(row, m))
            ]
        for m in METRICS:
            mean, low, high = cv_interval(results, model, m)
            metrics += [
                Metric(key, value, now, 0)
                for key, value in ((f"{m}", mean), (f"{m}.ci_low", low), (f"{m}.ci_high", high))
                if _finite(value)
            ]
        mlflow_run = client.create_run(experiment_id, tags=tags, run_name=model)
        run_id = mlflow_run.info.run_id
        client.log_batch(
            run_id,
            params=[Param(k, str(v)[:6000]) for k, v in params.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )
        for start in range(0, len(metrics), 900):  # MLflow accepts 1000 metrics per batch
            client.log_batch(run_id, metrics=metrics[start : start + 900])
        with tempfile.TemporaryDirectory() as tmp:
            report = results.run_dir / "report.html"
            if not report.is_file():  # a run made through the API has no report yet
                report = write_reports(results, comparison, ("html",), out_dir=tmp)["html"]
            client.log_artifact(run_id, str(report))
            path = Path(tmp, f"predictions_{model}.csv")
            write_predictions_csv(results, path, model=model)
            client.log_artifact(run_id, str(path))
        client.set_terminated(run_id)
        ids.append(run_id)
    return ids


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def _quoted(text: str) -> str:
    return text.replace("'", "\\'")
