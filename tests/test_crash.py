"""Crash safety: a run killed at any moment (SIGKILL, the whole process group, workers included)
resumes to exactly the store and the numbers of a run that was never interrupted; a full disk or
an unwritable folder is one line, and nothing saved before is lost."""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cvkit.cli import main
from cvkit.runner import Store

TINY_CNN = """
from torch import nn

WIDTH = {width}


def build_model(context):
    return nn.Sequential(nn.Conv2d(context.in_channels, WIDTH, 3), nn.ReLU(),
                         nn.Conv2d(WIDTH, WIDTH, 3), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(WIDTH, context.n_classes))
"""
JOB_COLUMNS = "model, repeat, fold, seed_index, seed, key, status, selected_rule, selected_epoch"


def _command(plugins, out, summary):
    baseline, variant = plugins
    return [
        sys.executable,
        "-m",
        "cvkit.cli",
        "evaluate",
        str(variant),
        "--data",
        "demo",
        "--image-size",
        "16",
        "--baseline",
        str(baseline),
        "--folds",
        "4",
        "--repeats",
        "5",
        "--epochs",
        "3",
        "--jobs",
        "2",
        "--report",
        "none",
        "--out",
        str(out),
        "--json",
        str(summary),
    ]


def _start(command, cwd, env=None):
    return subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, env=env
    )  # its own process group: the kill reaches the workers


def _group(pgid: int) -> list[int]:
    """Processes still running (zombies aside) in process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def _orphans(pgid: int, timeout: float = 10.0) -> list[int]:
    """The run's processes left once its driver is gone (workers must die with their driver)."""
    deadline = time.monotonic() + timeout
    while _group(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _group(pgid)


def _contents(run_dir):
    with sqlite3.connect(run_dir / "cvkit.sqlite") as db:
        jobs = db.execute(f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY model, repeat, fold").fetchall()
        predictions = db.execute("SELECT * FROM predictions ORDER BY job_key, rule, sample_idx").fetchall()
        history = db.execute("SELECT * FROM history ORDER BY job_key, epoch").fetchall()
    return jobs, predictions, history


def _check_consistent(run_dir):
    """Whatever moment the kill hit: an intact database, and every job marked done complete."""
    path = run_dir / "cvkit.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        done = db.execute("SELECT key, selected_rule FROM jobs WHERE status = 'done'").fetchall()
        for key, rule in done:
            n = db.execute(
                "SELECT count(*) FROM predictions WHERE job_key = ? AND rule = ?", (key, rule)
            ).fetchone()[0]
            assert n > 0, f"job {key} is done without predictions"
            rules = db.execute(
                "SELECT rule, count(*) FROM predictions WHERE job_key = ? GROUP BY rule", (key,)
            ).fetchall()
            test_fold = {count for rule, count in rules if rule not in ("validation", "holdout")}
            assert test_fold == {n}, f"job {key} has a half-written prediction set"
            assert dict(rules).get("validation", 0) > 0, f"job {key} lacks its validation predictions"
    return len(done)


def _done(run_dir) -> int:
    try:
        with sqlite3.connect(f"file:{run_dir / 'cvkit.sqlite'}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT count(*) FROM jobs WHERE status = 'done'").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def _wait_for(process, condition, poll=0.01):
    while process.poll() is None and not condition():
        time.sleep(poll)


def test_ten_random_kills_resume_to_the_uninterrupted_store_and_numbers(tmp_path):
    """Two kills at random moments of the start-up (store creation, run description), eight at
    random moments of the training phase: after 1 or 2 more jobs are saved, plus a random delay
    of up to a job's length (mid-training, mid-commit, between jobs). Each kill is, at random,
    SIGKILL to the whole process group, SIGKILL to the driver alone (its workers must end
    themselves) or SIGTERM to the driver alone (`kill PID`: it ends its workers, exit 143). No
    process of the run may outlive its driver, and no paused-state file may be left anywhere."""
    plugin = [tmp_path / "narrow_cnn.py", tmp_path / "wide_cnn.py"]
    for path, width in zip(plugin, (8, 16)):
        path.write_text(TINY_CNN.format(width=width))
    # Separate parents: a run reuses finished jobs from sibling run folders.
    reference, killed = tmp_path / "reference" / "run", tmp_path / "killed" / "run"
    started = time.perf_counter()
    process = _start(_command(plugin, reference, tmp_path / "reference.json"), tmp_path)
    _wait_for(process, lambda: _done(reference) > 0)
    start_up = time.perf_counter() - started
    assert process.wait() == 0, process.stderr.read().decode()
    per_job = (time.perf_counter() - started - start_up) / _done(reference)

    seed = random.SystemRandom().randrange(2**32)  # not the seeded global generator: kills vary by run
    rng = random.Random(seed)
    progress, ways = [], []
    temp = tmp_path / "temp"  # the runs' temporary folder: paused state must never land here
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    for kill in range(10):
        process = _start(_command(plugin, killed, tmp_path / "killed.json"), tmp_path, env)
        if kill < 2:
            time.sleep(rng.uniform(0, start_up))
        else:
            target = _done(killed) + rng.randint(1, 2)
            _wait_for(process, lambda target=target: _done(killed) >= target)
            time.sleep(rng.uniform(0, per_job))
        way = rng.choice(["SIGKILL group", "SIGKILL driver", "SIGTERM driver"])
        ways.append(way)
        if process.poll() is None:
            if way == "SIGKILL group":
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.send_signal(signal.SIGKILL if way == "SIGKILL driver" else signal.SIGTERM)
        code = process.wait(timeout=120)
        left = _orphans(process.pid)
        for pid in left:  # leave nothing running, whatever the test finds
            os.kill(pid, signal.SIGKILL)
        assert not left, f"seed {seed}: {way} left processes of the run: {left}"
        if way == "SIGTERM driver" and code == 143:
            assert "cvkit: terminated (SIGTERM); finished jobs are saved" in process.stderr.read().decode()
        progress.append(_check_consistent(killed))
    assert not list(temp.rglob("cvkit-paused-*")), f"seed {seed}: paused state in the temporary folder"
    process = _start(_command(plugin, killed, tmp_path / "killed.json"), tmp_path, env)
    assert process.wait() == 0, f"seed {seed}: " + process.stderr.read().decode()
    assert not list(killed.rglob("cvkit-paused-*")), f"seed {seed}: paused state left in the run folder"
    assert not list(temp.rglob("cvkit-paused-*")), f"seed {seed}: paused state in the temporary folder"
    total = _done(reference)
    print(
        f"kill seed {seed}: start-up {start_up:.1f} s, {per_job:.2f} s per job; jobs saved after each kill "
        f"{progress} of {total}; kills {ways}"
    )
    assert sum(0 < saved < total for saved in progress) >= 4, (
        f"too few kills in the training phase: {progress}"
    )

    assert _contents(killed) == _contents(reference), (
        f"kill seed {seed}, done jobs after each kill {progress}"
    )
    ours, theirs = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("killed", "reference"))
    for summary in (ours, theirs):
        summary.pop("run_dir", None)
        summary.pop("counts", None)
    assert ours["models"] == theirs["models"] and ours["comparison"] == theirs["comparison"]


def _evaluate(tiny_npz, out):
    return [
        "evaluate",
        "--data",
        str(tiny_npz),
        "--baseline",
        "logreg",
        "--folds",
        "3",
        "--repeats",
        "1",
        "--report",
        "none",
        "--out",
        str(out),
    ]


def test_unwritable_reports_folder_is_refused_before_training(tiny_npz, tmp_path, capsys):
    if os.geteuid() == 0:  # root writes through file modes: use a file system that refuses everyone
        parent = Path("/sys/kernel")
        if not parent.is_dir():
            pytest.skip("no read-only folder to try as root")
    else:
        parent = tmp_path / "readonly"
        parent.mkdir()
        parent.chmod(0o555)
    assert main(_evaluate(tiny_npz, parent / "run")) == 2
    err = capsys.readouterr().err
    assert "cannot write the run folder" in err and "pass --out" in err and "Traceback" not in err


def test_a_disk_too_full_for_the_store_is_refused_before_training(tiny_npz, tmp_path, capsys, monkeypatch):
    import shutil

    monkeypatch.setattr(
        shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 2**20, 2**20)
    )
    assert main(_evaluate(tiny_npz, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert "1 MiB free on its disk, the run needs about" in err
    assert not (tmp_path / "run" / "cvkit.sqlite").exists()


def test_disk_full_mid_run_keeps_the_saved_jobs_and_the_rerun_finishes(
    tiny_npz, tmp_path, capsys, monkeypatch
):
    """SQLite's own 'database or disk is full': after the first job, the store may not grow."""
    write_result = Store.write_result

    def then_full(self, result):
        write_result(self, result)
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        self.db.execute(f"PRAGMA max_page_count = {pages}")

    monkeypatch.setattr(Store, "write_result", then_full)
    assert main(_evaluate(tiny_npz, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert "database or disk is full" in err and "rerun the same command" in err and "Traceback" not in err
    with sqlite3.connect(tmp_path / "run" / "cvkit.sqlite") as db:
        saved = db.execute("SELECT count(*) FROM jobs WHERE status = 'done'").fetchone()[0]
    assert saved == 1

    monkeypatch.setattr(Store, "write_result", write_result)
    assert main(_evaluate(tiny_npz, tmp_path / "run")) == 0
    assert f"{saved} resumed from this run" in capsys.readouterr().out
