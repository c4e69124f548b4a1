"""`cvkit export mlflow` against today's MLflow: a live tracking server started here on 127.0.0.1,
MLflow's default store (``sqlite:///mlflow.db`` in the current folder), each read back with
MLflow's own client; an unreachable server is one line in seconds."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest

import cvkit
from cvkit.cli import main

mlflow = pytest.importorskip("mlflow", reason='the MLflow export needs its extra: pip install -e ".[mlflow]"')
MlflowClient = mlflow.tracking.MlflowClient

FAST = dict(folds=2, repeats=1, epochs=1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny):
    out = tmp_path_factory.mktemp("exported") / "run"
    cvkit.evaluate("fc_attention", data=tiny, out=out, **FAST)
    return out


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on a free port of 127.0.0.1, with a SQLite store and proxied artifacts in a
    temporary folder; stopped (its whole process group) after the module's tests."""
    folder = tmp_path_factory.mktemp("mlflow_server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
    ]
    log = open(folder / "server.log", "wb")
    server = subprocess.Popen(
        command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield uri, folder
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _read_back(uri, experiment, run_dir, tmp_path):
    """The export as MLflow's client sees it: one active run per model with the run's params,
    per-fold and summary metrics, verdict tags and both artifacts (downloaded and checked)."""
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = {r.data.tags["cvkit.model"]: r for r in client.search_runs([found.experiment_id])}
    assert set(runs) == {"resnet18", "fc_attention"}  # a second export replaced the first
    results = cvkit.Results(run_dir)
    for model, run in runs.items():
        assert run.info.status == "FINISHED"
        assert run.data.params["design.folds"] == "2" and run.data.params["config.epochs"] == "1"
        expected = results.metrics[results.metrics.model == model]["auc"].to_numpy()
        history = client.get_metric_history(run.info.run_id, "fold.auc")
        assert sorted(m.value for m in history) == pytest.approx(sorted(expected))
        assert run.data.metrics["auc"] == pytest.approx(expected.mean())
        assert {"auc.ci_low", "auc.ci_high"} <= set(run.data.metrics)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert artifacts == {"report.html", f"predictions_{model}.csv"}
        csv = client.download_artifacts(run.info.run_id, f"predictions_{model}.csv", str(tmp_path))
        assert len(pd.read_csv(csv)) == len(results.predictions[results.predictions.model == model])
    verdicts = {"better", "worse", "equivalent", "inconclusive"}
    assert runs["fc_attention"].data.tags["cvkit.verdict"] in verdicts
    assert "cvkit.verdict" not in runs["resnet18"].data.tags
    return client, found


def test_export_to_a_live_tracking_server(run_dir, mlflow_server, tmp_path, capsys):
    uri, folder = mlflow_server
    for _ in range(2):  # exporting again replaces the earlier export
        assert main(["export", "mlflow", run_dir, "--tracking-uri", uri]) == 0
    assert f"2 runs logged (resnet18, fc_attention) to {uri}" in capsys.readouterr().out
    client, experiment = _read_back(uri, "run", run_dir, tmp_path)
    deleted = mlflow.entities.ViewType.DELETED_ONLY
    assert len(client.search_runs([experiment.experiment_id], run_view_type=deleted)) == 2
    assert any((folder / "artifacts").rglob("report.html"))  # the server stored what the client sent


def test_export_without_a_uri_goes_to_mlflows_default_store(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["export", "mlflow", run_dir]) == 0
    out = capsys.readouterr().out
    database = tmp_path / "mlflow.db"
    assert database.is_file() and f"to sqlite:///{database}" in out.replace("\n", "")
    _read_back(f"sqlite:///{database}", "run", run_dir, tmp_path / "download")


def test_a_file_store_the_user_names_works_without_mlflows_switch(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = (tmp_path / "mlruns").as_uri()
    assert main(["export", "mlflow", run_dir, "--tracking-uri", uri]) == 0
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # switched on for the export only
    assert "MLFLOW_ALLOW_FILE_STORE=true" in capsys.readouterr().err  # what `mlflow ui` will need
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's client needs it to read back
    _read_back(uri, "run", run_dir, tmp_path / "download")


def test_an_unreachable_server_is_one_line_in_seconds(run_dir, capsys):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    assert main(["export", "mlflow", run_dir, "--tracking-uri", f"http://127.0.0.1:{port}"]) == 2
    assert time.monotonic() - started < 30  # MLflow's own retries take minutes
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"cvkit: error: MLflow: no tracking server answers at http://127.0.0.1:{port}")
    assert len(error.splitlines()) == 1
