"""Adversarial stores and run folders (issue 22, items 15 and 18): a damaged prediction row, a run
interrupted milliseconds after its store appeared, a read-only folder, a lock held by another
program, a plugin edited mid-run and a run folder deleted mid-run each give one line that names
what is wrong and what to do (exit 2), never a traceback, and lose nothing already computed."""

import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from cvkit.cli import main
from cvkit.data import make_demo
from cvkit.runner import Store

READERS = ("report", "compare", "export", "verify")


def _npz(path):
    """A small BreastMNIST-style archive (the tiny demo set of conftest, made once per module)."""
    tiny = make_demo(60, image_size=16, seed=1)
    images, labels = tiny.images[:, 0], 1 - tiny.labels[:, None]
    np.savez(
        path,
        train_images=images[:40],
        train_labels=labels[:40],
        val_images=images[40:50],
        val_labels=labels[40:50],
        test_images=images[50:],
        test_labels=labels[50:],
    )
    return path


def _evaluate(data, out, *extra):
    return [
        "evaluate",
        *extra,
        "--data",
        str(data),
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


def _read(command, run_dir, tmp_path):
    """A command that only reads the run: report, compare, export (to a file outside it) or verify."""
    if command == "export":
        return ["export", str(run_dir), "--json", str(tmp_path / "summary.json")]
    if command == "verify":
        return ["verify", str(run_dir), "--jobs", "3"]
    return [command, str(run_dir)]


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("cvkit: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished three-job run and its data, copied by each test that changes it."""
    folder = tmp_path_factory.mktemp("finished")
    data = _npz(folder / "tiny.npz")
    assert main(_evaluate(data, folder / "run")) == 0
    return data, folder / "run"


def _copy(finished, tmp_path):
    data, run = finished
    copy = tmp_path / "reports" / "run"
    shutil.copytree(run, copy)
    return data, copy


# -- item 15: damaged prediction rows -------------------------------------------------------------

DAMAGE = {
    "bad JSON": "[0.25, 0.75",
    "binary blob": b"\x89PNG\xff\x00\x17",
    "inhomogeneous shapes": "[0.2, 0.3, 0.5]",
    "NaN": "[NaN, 0.5]",
}


def _damage(run_dir, value):
    """Overwrite one prediction row of the second job under its selected checkpoint."""
    with sqlite3.connect(run_dir / "cvkit.sqlite") as db:
        key, rule, model, repeat, fold, seed_index = db.execute(
            "SELECT key, selected_rule, model, repeat, fold, seed_index FROM jobs "
            "ORDER BY model, repeat, fold LIMIT 1 OFFSET 1"
        ).fetchone()
        db.execute(
            "UPDATE predictions SET probs = ? WHERE job_key = ? AND rule = ? AND sample_idx = "
            "(SELECT min(sample_idx) FROM predictions WHERE job_key = ? AND rule = ?)",
            (value, key, rule, key, rule),
        )
    return f"{model} repeat {repeat} fold {fold} seed {seed_index}"


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_prediction_row_is_one_line_naming_the_job_and_its_advice_works(
    finished, tmp_path, capsys, damage
):
    data, run = _copy(finished, tmp_path)
    job = _damage(run, DAMAGE[damage])
    for command in READERS:
        assert main(_read(command, run, tmp_path)) == 2, command
        line = _one_line(capsys.readouterr().err)
        assert str(run / "cvkit.sqlite") in line and job in line and "damaged" in line, line
        assert "rerun the cvkit evaluate command" in line and "delete the run folder" in line, line

    # The advice, followed word for word: delete the job's row, rerun; only that job trains again.
    advice = re.search(r'sqlite3 (\S+) "(DELETE FROM jobs WHERE key = \'[0-9a-f]{64}\')"', line)
    with sqlite3.connect(shlex.split(advice[1])[0]) as db:
        db.execute(advice[2])
    assert main(_evaluate(data, run)) == 0
    assert "1 jobs trained, 2 resumed" in capsys.readouterr().out
    assert main(["report", str(run)]) == 0


@pytest.mark.parametrize("column", ["environment", "class_weight", "info"])
def test_a_damaged_job_description_is_one_line_naming_the_job(finished, tmp_path, capsys, column):
    _, run = _copy(finished, tmp_path)
    with sqlite3.connect(run / "cvkit.sqlite") as db:
        model, repeat, fold, seed_index = db.execute(
            "SELECT model, repeat, fold, seed_index FROM jobs ORDER BY fold DESC LIMIT 1"
        ).fetchone()
        db.execute(f"UPDATE jobs SET {column} = '{{not json' WHERE fold = ?", (fold,))
    for command in READERS:
        assert main(_read(command, run, tmp_path)) == 2, command
        line = _one_line(capsys.readouterr().err)
        assert f"{model} repeat {repeat} fold {fold} seed {seed_index} is damaged" in line, line
        assert f"its {column} is not valid JSON" in line and "DELETE FROM jobs WHERE key" in line, line


def test_damaged_rows_in_a_sibling_run_are_not_reused(finished, tmp_path, capsys):
    """Reuse copies rows between stores: a damaged one must not spread, the job trains instead."""
    data, run = _copy(finished, tmp_path)
    _damage(run, DAMAGE["bad JSON"])
    sibling = run.parent / "sibling"
    assert main(_evaluate(data, sibling)) == 0
    assert "1 jobs trained, 0 resumed from this run, 2 reused" in capsys.readouterr().out
    assert main(["report", str(sibling)]) == 0


# -- item 15: a run interrupted before its first finished job -------------------------------------

NO_FINISHED_JOBS = "this run has no finished jobs yet"


def _interrupt_at(monkeypatch, write: int):
    """Interrupt the run at its ``write``-th store write (1: the schema version; then the run's
    description, recipe, plan, samples, model, identity; then the first job), as a kill would."""
    calls = {"n": 0}
    for name in ("set_meta", "write_samples", "write_model", "write_result"):
        original = getattr(Store, name)

        def interrupted(self, *args, original=original, **kwargs):
            calls["n"] += 1
            if calls["n"] == write:
                raise KeyboardInterrupt
            return original(self, *args, **kwargs)

        monkeypatch.setattr(Store, name, interrupted)


@pytest.mark.parametrize("write", range(1, 9))
def test_a_run_interrupted_at_any_stage_before_its_first_job_reads_as_such(
    finished, tmp_path, capsys, monkeypatch, write
):
    data, _ = finished
    run = tmp_path / "reports" / "run"
    with monkeypatch.context() as patch:
        _interrupt_at(patch, write)
        assert main(_evaluate(data, run)) == 130
    capsys.readouterr()
    assert (run / "cvkit.sqlite").is_file()
    for command in READERS:
        assert main(_read(command, run, tmp_path)) == 2, command
        line = _one_line(capsys.readouterr().err)
        assert NO_FINISHED_JOBS in line and "rerun the same cvkit evaluate command" in line, line
    assert main(_evaluate(data, run)) == 0
    assert "3 jobs trained" in capsys.readouterr().out
    assert main(["report", str(run)]) == 0


def test_an_empty_store_file_reads_as_a_run_with_no_finished_jobs(tmp_path, capsys):
    """Killed between the file's creation and its first page."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "cvkit.sqlite").touch()
    for command in READERS:
        assert main(_read(command, run, tmp_path)) == 2, command
        assert NO_FINISHED_JOBS in _one_line(capsys.readouterr().err)


def test_sigkill_milliseconds_after_the_store_appears_then_readers_and_resume(finished, tmp_path, capsys):
    data, _ = finished
    for attempt, delay in enumerate((0.0, 0.002, 0.005, 0.01)):
        run = tmp_path / f"reports{attempt}" / "run"
        store = run / "cvkit.sqlite"
        process = subprocess.Popen(
            [sys.executable, "-m", "cvkit.cli", *_evaluate(data, run)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        while process.poll() is None and not store.exists():
            time.sleep(0.0002)
        time.sleep(delay)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        with sqlite3.connect(store) as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
            count = "SELECT count(*) FROM jobs WHERE status = 'done'"
            done = "jobs" in tables and db.execute(count).fetchone()[0]
        for command in READERS:
            code = main(_read(command, run, tmp_path))
            err = capsys.readouterr().err
            if done:  # the kill came late: the run reads normally
                assert code in (0, 1) and "Traceback" not in err, err
            else:
                assert code == 2, (command, err)
                assert NO_FINISHED_JOBS in _one_line(err)
        assert main(_evaluate(data, run)) == 0
        capsys.readouterr()
        assert main(["report", str(run)]) == 0


# -- item 18a: a read-only run folder -------------------------------------------------------------


@pytest.fixture
def read_only_run(finished, tmp_path):
    """The finished run on a file system mounted read-only: file modes do not stop root, a
    read-only mount stops everyone."""
    mount = tmp_path / "mount"
    mount.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mount)], capture_output=True)
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a file system here (needs root): {mounted.stderr.decode().strip()}")
    try:
        shutil.copytree(finished[1], mount / "run")
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        yield mount / "run"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_read_only_run_folder_is_called_read_only_not_damaged(read_only_run, tmp_path, capsys):
    for command in READERS:
        assert main(_read(command, read_only_run, tmp_path)) == 2, command
        line = _one_line(capsys.readouterr().err)
        assert "the run folder is read-only" in line and "damaged" not in line, line
        assert "make the folder writable" in line and "copy the run folder" in line, line


# -- item 18b: a lock held by another program -----------------------------------------------------

HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


def _lock_before_first_result(monkeypatch, seconds: float, holders: list):
    """Before the run saves its first job, another process takes the store's write lock for
    ``seconds``; SQLite's own wait is cut to 0.2 s, standing in for a lock held longer than it."""
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: connect(*a, **{**k, "timeout": 0.2}))
    write_result = Store.write_result

    def locked_first(self, result):
        if not holders:
            holder = subprocess.Popen(
                [sys.executable, "-c", HOLD_LOCK, str(self.path), str(seconds)], stdout=subprocess.PIPE
            )
            assert holder.stdout.readline() == b"locked\n"
            holders.append(holder)
        return write_result(self, result)

    monkeypatch.setattr(Store, "write_result", locked_first)


def test_a_brief_lock_by_another_program_is_waited_out_and_no_job_is_lost(finished, tmp_path, capsys):
    data, _ = finished
    run, holders = tmp_path / "run", []
    with pytest.MonkeyPatch.context() as patch:
        _lock_before_first_result(patch, 3.0, holders)
        started = time.perf_counter()
        code = main(_evaluate(data, run))
        waited = time.perf_counter() - started
    holders[0].wait()
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "another program holds the lock on the run store; waiting" in err
    assert "3 jobs trained" in out and waited >= 3.0
    with sqlite3.connect(run / "cvkit.sqlite") as db:
        assert db.execute("SELECT count(*) FROM jobs WHERE status = 'done'").fetchone()[0] == 3


def test_a_lock_held_for_good_is_one_line_naming_it_and_saved_jobs_stay(finished, tmp_path, capsys):
    data, _ = finished
    run, holders = tmp_path / "run", []
    try:
        with pytest.MonkeyPatch.context() as patch:
            _lock_before_first_result(patch, 60.0, holders)
            patch.setattr(Store, "lock_wait_s", 2.0, raising=False)
            assert main(_evaluate(data, run)) == 2
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    line = _one_line(capsys.readouterr().err)
    assert f"another program holds the lock on {run / 'cvkit.sqlite'}" in line, line
    assert "free disk space" not in line and "rerun the same command" in line, line
    # The lock gone, a rerun in the same process finishes the run at once: the claims the failed
    # driver could not delete (the store was locked) are not taken for another driver's.
    assert main(_evaluate(data, run)) == 0
    assert "claimed by another cvkit process" not in capsys.readouterr().err


# -- item 18c: a plugin edited mid-run ------------------------------------------------------------

SKLEARN_PLUGIN = """
from sklearn.linear_model import LogisticRegression

C = {c}


def build_estimator(context):
    return LogisticRegression(C=C, max_iter=500)
"""


def test_a_plugin_edited_mid_run_is_named_and_both_ways_out_work(finished, tmp_path, capsys, monkeypatch):
    """Worker processes load the plugin file again: edited after the first saved job, it fails
    its jobs with one line naming it (not 'worker died 3 times'); restoring it resumes the run,
    and the edited version runs into a new folder."""
    data, _ = finished
    plugin = tmp_path / "small_c.py"
    plugin.write_text(SKLEARN_PLUGIN.format(c=0.5))
    run = tmp_path / "reports" / "run"
    command = _evaluate(data, run, str(plugin), "--executor", "process", "--jobs", "2")
    with monkeypatch.context() as patch:
        write_result = Store.write_result

        def edit_after_first(self, result):
            write_result(self, result)
            plugin.write_text(SKLEARN_PLUGIN.format(c=2.0))

        patch.setattr(Store, "write_result", edit_after_first)
        assert main(command) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{plugin} changed during the run" in line and "died" not in line, line
    assert "restore it" in line and "--out" in line, line
    with sqlite3.connect(run / "cvkit.sqlite") as db:
        saved = db.execute("SELECT model, count(*) FROM jobs WHERE status = 'done' GROUP BY model").fetchall()
    assert dict(saved)["logreg"] == 3

    assert main([*command[:-1], str(tmp_path / "reports" / "new")]) == 0  # the new version, a new run
    capsys.readouterr()
    plugin.write_text(SKLEARN_PLUGIN.format(c=0.5))  # restored: the same command resumes
    assert main(command) == 0
    assert ", 3 resumed from this run" in capsys.readouterr().out


# -- item 18d: a run folder deleted mid-run -------------------------------------------------------


def test_a_run_folder_deleted_mid_run_stops_the_run_at_the_next_job(finished, tmp_path, capsys, monkeypatch):
    data, _ = finished
    run = tmp_path / "reports" / "run"
    saved_after = []
    write_result = Store.write_result

    def delete_after_first(self, result):
        if run.exists():
            write_result(self, result)
            shutil.rmtree(run)
        else:
            saved_after.append(result.job)

    monkeypatch.setattr(Store, "write_result", delete_after_first)
    assert main(_evaluate(data, run, "--jobs", "1")) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(run) in line and "deleted or moved while the run was going" in line, line
    assert saved_after == [], "jobs went on training into the deleted store"
