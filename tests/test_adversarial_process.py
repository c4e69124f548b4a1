"""Issue 22, exit status, hangs, leaks and concurrency: a plugin that ends its process or leaves a
thread running fails its job in one line; SIGTERM is handled like Ctrl-C; workers die with their
driver; paused-state files live under the run folder; two drivers on one run folder train each
job once. Each runs the command line in a child process: what is tested ends processes."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

# A plugin that does what the parametrised statement says, after noting the call (one line per
# call: a count of trainings started). In training, the statement runs in the first forward pass
# with gradients, which the pre-flight's check (no gradients) never makes; on building, it runs
# in build_model, which the pre-flight calls too.
ENDS_THE_PROCESS = """
import os, sys, threading, time
import torch
from torch import nn

def note_and_do():
    with open({calls!r}, "a") as calls:
        calls.write(f"{{os.getpid()}}\\n")
    {statement}

class Ender(nn.Module):
    def __init__(self, context):
        super().__init__()
        self.linear = nn.Linear(context.in_channels * 16 * 16, context.n_classes)
        self.started = False

    def forward(self, x):
        if {in_training} and torch.is_grad_enabled() and not self.started:
            self.started = True
            note_and_do()
        return self.linear(x.flatten(1))

def build_model(context):
    if not {in_training}:
        note_and_do()
    return Ender(context)
"""


def _plugin(tmp_path, statement, name="ender", when="training"):
    path = tmp_path / f"{name}.py"
    source = ENDS_THE_PROCESS.format(
        calls=str(tmp_path / "calls"), statement=statement, in_training=when == "training"
    )
    path.write_text(source)
    return path


def _evaluate(variant, out, *options, baseline="logreg"):
    """``cvkit evaluate`` of ``variant`` (None: the baseline alone) on 2 folds of small demo images."""
    return [
        sys.executable,
        "-m",
        "cvkit.cli",
        "evaluate",
        *([str(variant)] if variant else []),
        "--data",
        "demo",
        "--image-size",
        "16",
        "--baseline",
        str(baseline),
        "--folds",
        "2",
        "--repeats",
        "1",
        "--epochs",
        "1",
        "--report",
        "none",
        "--out",
        str(out),
        *options,
    ]


def _run(command, cwd, timeout=240, **env):
    """Run ``command`` in its own process group; on a hang, end the group (workers included) and fail."""
    process = _start(command, cwd, **env)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"the run did not end within {timeout} s")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def _start(command, cwd, **env):
    return subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
        start_new_session=True,
    )


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait(condition, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _statuses(run_dir) -> dict:
    with sqlite3.connect(run_dir / "cvkit.sqlite") as db:
        return {(m, f): s for m, f, s in db.execute("SELECT model, fold, status FROM jobs")}


def _calls(tmp_path) -> int:
    path = tmp_path / "calls"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.parametrize("statement", ["sys.exit(0)", "os._exit(0)"])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_plugin_ending_its_process_fails_its_jobs_in_one_line_and_the_run_exits_2(
    tmp_path, statement, jobs
):
    """Item 9: on the original code ``--jobs 1`` exited 0 with nothing printed."""
    plugin = _plugin(tmp_path, statement)
    done = _run(_evaluate(plugin, tmp_path / "run", "--jobs", jobs), tmp_path)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("cvkit: error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert "2 of 4 jobs failed, the others are saved" in errors[0] and "ender" in errors[0]
    assert ("sys.exit(0)" if statement == "sys.exit(0)" else "exit code 0") in errors[0]
    statuses = _statuses(tmp_path / "run")
    assert {s for (m, _), s in statuses.items() if m == "logreg"} == {"done"}
    assert {s for (m, _), s in statuses.items() if m == "ender"} == {"failed"}
    # A job that ends its process is not retried as a lost worker would be (3 times each); with two
    # in flight, the one whose worker the pool ended when the other exited is lost and runs again.
    assert _calls(tmp_path) == 2 if jobs == "1" else 2 <= _calls(tmp_path) <= 3


@pytest.mark.parametrize("statement", ["sys.exit(3)", "os._exit(0)"])
def test_a_plugin_ending_its_process_while_built_is_stopped_by_the_pre_flight(tmp_path, statement):
    """The pre-flight builds the model in a child process: the driver survives a plugin that ends
    its process there, says so in one line and leaves no run folder (in the driver itself, the
    command ended with exit code 3, or 0, and said nothing)."""
    plugin = _plugin(tmp_path, statement, when="building")
    done = _run(_evaluate(plugin, tmp_path / "run"), tmp_path)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("cvkit: error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    ended = "called sys.exit(3)" if statement == "sys.exit(3)" else "ended the process (exit code 0)"
    assert f"ender.py: ender {ended}" in errors[0] and "before any job started" in errors[0]
    assert not (tmp_path / "run").exists() and _calls(tmp_path) == 1


@pytest.mark.parametrize("options", [["--jobs", "2"], ["--jobs", "1"], ["--executor", "inprocess"]])
def test_a_plugin_leaving_a_thread_running_fails_its_jobs_and_the_run_still_ends(tmp_path, options):
    """Item 10: on the original code the run never ended (workers, or the driver, waited for the
    thread at exit)."""
    # Started while the model is built: in the pre-flight's check too, whose process ends anyway.
    thread = "threading.Thread(target=time.sleep, args=(3600,), name='poller').start()"
    plugin = _plugin(tmp_path, thread, when="building")
    done = _run(_evaluate(plugin, tmp_path / "run", *options), tmp_path, timeout=180)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("cvkit: error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert "2 of 4 jobs failed" in errors[0] and "ender left 1 thread running" in errors[0]
    assert "(poller)" in errors[0] and "daemon=True" in errors[0]
    assert {s for (m, _), s in _statuses(tmp_path / "run").items() if m == "logreg"} == {"done"}


def test_sigterm_keeps_finished_jobs_ends_the_workers_and_exits_143(tmp_path):
    """Item 11: on the original code SIGTERM killed the driver silently and orphaned its workers."""
    plugin = _plugin(tmp_path, "time.sleep(120)")
    process = _start(_evaluate(plugin, tmp_path / "run", "--jobs", "2"), tmp_path)
    try:
        assert _wait(lambda: _calls(tmp_path) == 2, 120), "the plugin's jobs never started"
        workers = [int(pid) for pid in (tmp_path / "calls").read_text().split()]
        assert all(_alive(pid) for pid in workers) and process.pid not in workers
        process.send_signal(signal.SIGTERM)  # the driver only, as `kill PID` does
        _, err = process.communicate(timeout=60)
        assert process.returncode == 143, err
        assert "cvkit: terminated (SIGTERM); finished jobs are saved, rerun the same command" in err
        assert "Traceback" not in err
        assert _wait(lambda: not any(_alive(pid) for pid in workers), 10), "orphaned workers"
        assert {s for (m, _), s in _statuses(tmp_path / "run").items() if m == "logreg"} == {"done"}
    finally:
        _end_group(process)


def test_workers_die_with_a_killed_driver(tmp_path):
    """Item 11: SIGKILL leaves the driver no chance to end its workers; they end themselves."""
    plugin = _plugin(tmp_path, "time.sleep(120)")
    process = _start(_evaluate(plugin, tmp_path / "run", "--jobs", "2"), tmp_path)
    try:
        assert _wait(lambda: _calls(tmp_path) == 2, 120), "the plugin's jobs never started"
        workers = [int(pid) for pid in (tmp_path / "calls").read_text().split()]
        process.kill()
        process.wait()  # not communicate: orphaned workers would hold its pipes open
        assert _wait(lambda: not any(_alive(pid) for pid in workers), 10), "orphaned workers"
    finally:
        _end_group(process)


def _end_group(process):
    """Whatever the test found, leave no process of the run behind."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.communicate()


# Kills its driver (SIGKILL: nothing can clean up) on the fourth model build of a job, once: with 3
# two-epoch jobs on 2 workers that is the second part of the job split to fill the idle worker,
# while the paused state of its first part is on disk. Each build takes a numbered file.
KILLS_THE_DRIVER_MID_JOB = """
import os, signal, time
from pathlib import Path
from torch import nn

CALLS = Path({calls!r})

def build_model(context):
    number = 1
    while True:
        try:
            os.close(os.open(CALLS / str(number), os.O_CREAT | os.O_EXCL))
            break
        except FileExistsError:
            number += 1
    if number == 7:  # the first three builds are the pre-flight's: its check, then with and without extras
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(30)
    return nn.Sequential(nn.Flatten(), nn.Linear(context.in_channels * 16 * 16, context.n_classes))
"""


def test_paused_state_of_a_killed_run_stays_in_its_folder_and_the_next_run_sweeps_it(tmp_path):
    """Item 12: on the original code the paused state went to the temporary folder and stayed."""
    (tmp_path / "calls").mkdir()
    (tmp_path / "temp").mkdir()
    plugin = tmp_path / "pauses.py"
    plugin.write_text(KILLS_THE_DRIVER_MID_JOB.format(calls=str(tmp_path / "calls")))
    command = _evaluate(
        None, tmp_path / "run", "--jobs", "2", "--folds", "3", "--epochs", "2", baseline=plugin
    )
    killed = _run(command, tmp_path, TMPDIR=str(tmp_path / "temp"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not list((tmp_path / "temp").rglob("cvkit-paused-*"))
    left = list((tmp_path / "run" / ".paused").rglob("cvkit-paused-*.pt"))
    assert len(left) == 1  # the first part's state, in the run folder, in its driver's own folder

    done = _run(command, tmp_path, TMPDIR=str(tmp_path / "temp"))
    assert done.returncode == 0, done.stderr
    assert not list((tmp_path / "run").rglob("cvkit-paused-*")), "stale paused state not swept"
    assert not list((tmp_path / "temp").rglob("cvkit-paused-*"))
    assert set(_statuses(tmp_path / "run").values()) == {"done"}


def test_two_drivers_on_one_run_folder_train_every_job_exactly_once(tmp_path):
    """Item 22: on the original code both drivers trained every job (12 trainings for 6 jobs)."""
    plugin = _plugin(tmp_path, "time.sleep(1)", name="slow")  # jobs long enough to overlap
    command = _evaluate(None, tmp_path / "run", "--jobs", "1", "--repeats", "3", baseline=plugin)
    drivers = [_start(command, tmp_path) for _ in range(2)]
    try:
        outputs = [driver.communicate(timeout=300) for driver in drivers]
    finally:
        for driver in drivers:
            _end_group(driver)
    for driver, (_, err) in zip(drivers, outputs):
        assert driver.returncode == 0, err
    assert _calls(tmp_path) == 6  # 3 repeats x 2 folds, each trained once
    trained = [int(out.split(" jobs trained, ")[0].split()[-1]) for out, _ in outputs]
    assert sum(trained) == 6, trained
    with sqlite3.connect(tmp_path / "run" / "cvkit.sqlite") as db:
        assert db.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall() == [("done", 6)]
        assert db.execute("SELECT count(*) FROM claims").fetchone()[0] == 0  # every claim released


def test_claims_of_dead_or_expired_owners_are_taken_over_and_live_ones_waited_for(tiny, tmp_path):
    """Item 22: a job claimed by a process of this machine that is gone, or by another machine
    whose lease ran out, trains here; one a live driver holds is waited for and collected."""
    import threading
    from types import SimpleNamespace

    import cvkit
    from cvkit.runner import JobClaims, Store
    from cvkit.runner._claims import HOST

    run = tmp_path / "run"
    design = dict(folds=3, repeats=1, epochs=1, executor="inprocess")
    cvkit.evaluate([], data=tiny, out=run, **design)
    with sqlite3.connect(run / "cvkit.sqlite") as db:
        keys = [k for (k,) in db.execute("SELECT key FROM jobs ORDER BY fold")]
        db.execute("UPDATE jobs SET status = 'failed'")  # all three train again
        now = time.time()
        db.executemany(
            "INSERT INTO claims VALUES (?, ?, ?)",
            [
                (keys[0], f"{HOST}.999999999.deadbeef", now + 3600),  # a process gone from this machine
                (keys[1], "elsewhere.12.cafe", now - 1),  # another machine, lease run out
                (keys[2], "elsewhere.13.f00d", now + 3600),  # another machine's live driver
            ],
        )

    def other_driver_finishes():
        time.sleep(2)
        with sqlite3.connect(run / "cvkit.sqlite") as db:
            db.execute("UPDATE jobs SET status = 'done' WHERE key = ?", (keys[2],))
            db.execute("DELETE FROM claims WHERE job_key = ?", (keys[2],))

    other = threading.Thread(target=other_driver_finishes)
    other.start()
    with pytest.warns(UserWarning, match="1 jobs were claimed by another cvkit process"):
        again = cvkit.evaluate([], data=tiny, out=run, **design)
    other.join()
    assert (again.counts.trained, again.counts.resumed, again.counts.failed) == (2, 1, 0)
    with Store(run) as store:
        assert store.done_keys() == set(keys)
    # A driver that listed a job as pending before another saved it does not claim (train) it again.
    claims = JobClaims(run)
    assert not claims.claim(SimpleNamespace(key=keys[0]))
    claims.db.close()
