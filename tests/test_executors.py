"""Executors: every one gives the same predictions; lost workers and failing jobs cost only themselves."""

import json
import sqlite3

import numpy as np
import pytest

import cvkit
import cvkit.api
from cvkit.errors import ConfigError, JobsFailed

FAST = dict(folds=3, repeats=1, epochs=1)


@pytest.fixture
def no_preflight(monkeypatch):
    """These plugins fail, die or count their builds inside jobs: the pre-flight, which builds each
    model once in this process before any job, would meet them first (or die with them)."""
    monkeypatch.setattr(cvkit.api, "preflight", lambda plugin, context, sample: True)


# Kills the process training it the first time it runs (a marker file remembers), as a crashed or
# OOM-killed worker would die; the second attempt trains normally.
SUICIDAL = """
import os, signal
from pathlib import Path
from cvkit.trainers import classifier

MARKER = Path({marker!r})

def build_model(context):
    if not MARKER.exists():
        MARKER.write_text("killed once")
        os.kill(os.getpid(), signal.SIGKILL)
    return classifier("resnet18", in_channels=context.in_channels, n_classes=context.n_classes)
"""

# Raises while a marker file exists: a failure that the user can fix without editing the plugin.
FLAKY = """
from pathlib import Path
from cvkit.trainers import classifier

def build_model(context):
    if Path({marker!r}).exists():
        raise RuntimeError("the scanner archive is offline")
    return classifier("resnet18", in_channels=context.in_channels, n_classes=context.n_classes)
"""


# Kills the process training it on the run's fourth model build, once: with 3 two-epoch jobs on 2
# workers that is the second part of the job split to fill the idle worker (first part, two
# whole jobs, then the rest). Each build takes a numbered file, which only one process can create.
KILLS_THE_REST = """
import os, signal
from pathlib import Path
from cvkit.trainers import classifier

CALLS = Path({calls!r})

def build_model(context):
    number = 1
    while True:
        try:
            os.close(os.open(CALLS / str(number), os.O_CREAT | os.O_EXCL))
            break
        except FileExistsError:
            number += 1
    if number == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    return classifier("resnet18", in_channels=context.in_channels, n_classes=context.n_classes)
"""


def _stored(run_dir):
    """Every stored prediction (each rule and epoch) and history row, by model, fold and sample."""
    with sqlite3.connect(run_dir / "cvkit.sqlite") as db:
        return [
            db.execute(
                f"SELECT j.fold, x.* FROM {table} x JOIN jobs j ON j.key = x.job_key ORDER BY 1, 3, 4"
            ).fetchall()
            for table in ("predictions", "history")
        ]


class _Starts:
    """A progress listener that remembers which jobs started, as often as they did."""

    def __init__(self):
        self.started = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def start(self, total, done):
        pass

    def job_started(self, job):
        self.started.append(job.fold)

    def epoch_done(self, job, record):
        pass

    def job_done(self, job):
        pass


def test_a_job_trained_in_two_parts_by_two_workers_is_stored_as_trained_in_one(tiny, tmp_path, monkeypatch):
    import tempfile

    design = dict(folds=3, repeats=1, epochs=3)
    cvkit.evaluate([], data=tiny, out=tmp_path / "a" / "run", jobs=1, **design)
    starts = _Starts()
    (tmp_path / "temp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))  # where paused jobs are kept
    split = cvkit.evaluate([], data=tiny, out=tmp_path / "b" / "run", jobs=2, progress=starts, **design)
    assert len(starts.started) == 4 and len(set(starts.started)) == 3  # one of the 3 jobs ran in two parts
    # Its paused state was kept in the run folder, never the temporary one, and removed once done.
    assert not list((tmp_path / "temp").glob("cvkit-paused-*"))
    assert not list((tmp_path / "b" / "run").rglob("cvkit-paused-*"))
    assert split.counts.trained == 3
    predictions, history = _stored(tmp_path / "a" / "run")
    from cvkit.runner import VALIDATION_RULE

    tested = [row for row in predictions if row[2] != VALIDATION_RULE]  # and each job's validation part
    assert len(tested) == 60 * (4 + 3) and len(history) == 9  # 4 rules and 3 epochs per test sample
    assert _stored(tmp_path / "b" / "run") == [predictions, history]


def test_a_worker_killed_in_the_second_part_of_a_job_loses_only_the_work_in_flight(
    tiny, tmp_path, write_plugin, no_preflight
):
    (tmp_path / "calls").mkdir()
    plugin = write_plugin("kills_the_rest", KILLS_THE_REST.format(calls=str(tmp_path / "calls")))
    design = dict(folds=3, repeats=1, epochs=2)
    results = cvkit.evaluate(
        [], baseline=str(plugin), data=tiny, out=tmp_path / "a" / "run", jobs=2, **design
    )
    # The killed part ran again, and so did the job beside it if it was still training: a dead
    # worker breaks the pool and everything in flight is lost (never what had finished).
    assert len(list((tmp_path / "calls").iterdir())) in (5, 6)
    assert results.counts.trained == 3 and {r[3] for r in _job_rows(tmp_path / "a" / "run")} == {"done"}
    plain = cvkit.evaluate([], data=tiny, out=tmp_path / "b" / "run", jobs=1, **design)
    assert np.array_equal(_probs(results), _probs(plain))


def _probs(results):
    frame = results.predictions.sort_values(["model", "repeat", "fold", "sample_id"])
    return frame.filter(like="prob_").to_numpy()


def _job_rows(run_dir):
    with sqlite3.connect(run_dir / "cvkit.sqlite") as db:
        return db.execute("SELECT model, repeat, fold, status FROM jobs").fetchall()


def test_process_executor_gives_the_same_predictions_as_in_process(tiny, tmp_path):
    local = cvkit.evaluate(
        "plugins/fc_attention.py", data=tiny, out=tmp_path / "a" / "run", executor="inprocess", **FAST
    )
    process = cvkit.evaluate(
        "plugins/fc_attention.py", data=tiny, out=tmp_path / "b" / "run", executor="process", jobs=2, **FAST
    )
    assert np.array_equal(_probs(local), _probs(process))


def test_a_killed_worker_loses_only_its_job_which_runs_again(tiny, tmp_path, write_plugin, no_preflight):
    plugin = write_plugin("suicidal", SUICIDAL.format(marker=str(tmp_path / "marker")))
    results = cvkit.evaluate(str(plugin), data=tiny, out=tmp_path / "run", executor="process", jobs=2, **FAST)
    assert (tmp_path / "marker").exists()
    rows = _job_rows(tmp_path / "run")
    assert len(rows) == 6 and {r[3] for r in rows} == {"done"}
    assert len(set((m, r, f) for m, r, f, _ in rows)) == 6  # each job exactly once
    assert results.counts.trained == 6


def test_a_failing_plugin_fails_only_its_jobs_and_a_rerun_retries_only_them(
    tiny, tmp_path, write_plugin, no_preflight
):
    marker = tmp_path / "offline"
    marker.write_text("")
    plugin = write_plugin("flaky", FLAKY.format(marker=str(marker)))
    with pytest.raises(
        JobsFailed,
        match=r"3 of 6 jobs failed, the others are saved: .*flaky.py:7: flaky failed "
        r"on repeat 0, fold \d: RuntimeError: the scanner archive is offline",
    ):
        cvkit.evaluate(str(plugin), data=tiny, out=tmp_path / "run", **FAST)
    statuses = {(m, f): s for m, _, f, s in _job_rows(tmp_path / "run")}
    assert {s for (m, _), s in statuses.items() if m == "resnet18"} == {"done"}
    assert {s for (m, _), s in statuses.items() if m == "flaky"} == {"failed"}
    marker.unlink()
    again = cvkit.evaluate(str(plugin), data=tiny, out=tmp_path / "run", **FAST)
    assert (again.counts.resumed, again.counts.trained, again.counts.failed) == (3, 3, 0)


def test_cli_reports_failed_jobs_in_one_line_and_exits_2(
    tiny_npz, tmp_path, write_plugin, capsys, no_preflight
):
    from cvkit.cli import main

    marker = tmp_path / "offline"
    marker.write_text("")
    plugin = write_plugin("flaky", FLAKY.format(marker=str(marker)))
    code = main(
        [
            "evaluate",
            str(plugin),
            "--data",
            tiny_npz,
            "--folds",
            "3",
            "--repeats",
            "1",
            "--epochs",
            "1",
            "--out",
            tmp_path / "run",
            "--report",
            "none",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "cvkit: error: 3 of 6 jobs failed, the others are saved" in err and "Traceback" not in err


def test_ray_executor_without_ray_says_how_to_install(tiny, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(
        ConfigError, match=r'--executor ray needs Ray, which is not installed: pip install -e "\.\[ray\]"'
    ):
        cvkit.evaluate([], data=tiny, out=tmp_path / "run", executor="ray", **FAST)


@pytest.fixture(scope="module")
def ray_cluster():
    """A real Ray cluster on 127.0.0.1: a head node and one more worker node."""
    import os

    # Ray swaps 127.0.0.1 for the machine's network address unless told the cluster is local-only;
    # read when ray is first imported, and inherited by its processes.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args=dict(num_cpus=1, node_ip_address="127.0.0.1", include_dashboard=False),
    )
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_ray_executor_gives_the_same_predictions_as_local(tiny, tmp_path, ray_cluster):
    local = cvkit.evaluate("plugins/fc_attention.py", data=tiny, out=tmp_path / "a" / "run", jobs=1, **FAST)
    on_ray = cvkit.evaluate(
        "plugins/fc_attention.py",
        data=tiny,
        out=tmp_path / "b" / "run",
        executor="ray",
        address=ray_cluster.address,
        **FAST,
    )
    assert np.array_equal(_probs(local), _probs(on_ray))
    assert {json.loads(job["environment"])["threads"] for job in on_ray.jobs} == {1}


def test_ray_run_survives_a_killed_worker(tiny, tmp_path, write_plugin, ray_cluster, no_preflight):
    plugin = write_plugin("suicidal", SUICIDAL.format(marker=str(tmp_path / "marker")))
    results = cvkit.evaluate(
        str(plugin), data=tiny, out=tmp_path / "run", executor="ray", address=ray_cluster.address, **FAST
    )
    assert (tmp_path / "marker").exists()  # a worker was killed mid-run
    rows = _job_rows(tmp_path / "run")
    assert len(rows) == 6 and {r[3] for r in rows} == {"done"}
    assert results.counts.trained == 6


class _StopAfterFirstJob:
    """A progress display whose user presses Ctrl-C as soon as the first job has finished."""

    def start(self, total, done):
        pass

    def job_started(self, job):
        pass

    def epoch_done(self, job, record):
        pass

    def job_done(self, job):
        raise KeyboardInterrupt

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("executor", ["process", "ray"])
def test_ctrl_c_keeps_finished_jobs_and_a_rerun_resumes(executor, tiny, tmp_path, request):
    options = dict(executor=executor, jobs=2, **FAST)
    if executor == "ray":
        options["address"] = request.getfixturevalue("ray_cluster").address
    with pytest.raises(KeyboardInterrupt):
        cvkit.evaluate(
            "plugins/fc_attention.py",
            data=tiny,
            out=tmp_path / "run",
            progress=_StopAfterFirstJob(),
            **options,
        )
    finished = [r for r in _job_rows(tmp_path / "run") if r[3] == "done"]
    assert 1 <= len(finished) < 6
    resumed = cvkit.evaluate("plugins/fc_attention.py", data=tiny, out=tmp_path / "run", **options)
    assert resumed.counts.resumed == len(finished) and resumed.counts.trained == 6 - len(finished)


# A parent that ran torch on several threads (a notebook cell, the pre-flight, an earlier run)
# holds libgomp's thread pool; a forked worker of several threads then hung in its first
# convolution. Several threads per job start from a fork server (a clean process).
FORKED_AFTER_THREADS = """
import sys
import torch
import cvkit


def main():
    torch.set_num_threads(2)
    conv = torch.nn.Conv2d(16, 32, 3)
    for _ in range(3):
        conv(torch.randn(64, 16, 64, 64))
    results = cvkit.evaluate([], data=cvkit.data.make_demo(60, image_size=16), folds=2, repeats=1,
                             epochs=1, threads_per_job=2, jobs=1, out=sys.argv[1], progress=False)
    print("trained", results.counts.trained)


if __name__ == "__main__":
    main()
"""


def test_jobs_of_several_threads_start_cleanly_after_the_parent_used_threads(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(FORKED_AFTER_THREADS)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "reports" / "run")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("trained 2")
    assert cvkit.runner.ProcessExecutor(1, 2).start_method == "forkserver"
    assert cvkit.runner.ProcessExecutor(2, 1).start_method == "fork"
