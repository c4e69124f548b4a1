"""The run store: one SQLite file per run folder, written one finished job per transaction."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sqlite3
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import StoreError
from ..files import STORE_NAME

SCHEMA_VERSION = 3
# The checkpoint name under which a job's inner validation predictions are kept (its selected
# checkpoint's); runs stored before cvkit kept them have none.
VALIDATION_RULE = "validation"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    idx INTEGER PRIMARY KEY, sample_id TEXT NOT NULL, label INTEGER NOT NULL, grp TEXT,
    holdout INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, origin TEXT NOT NULL, digest TEXT NOT NULL,
    hyperparams TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    model TEXT NOT NULL, repeat INTEGER NOT NULL, fold INTEGER NOT NULL, seed_index INTEGER NOT NULL,
    seed INTEGER NOT NULL, key TEXT NOT NULL, status TEXT NOT NULL, selected_rule TEXT,
    selected_epoch INTEGER, duration_s REAL, finished_at TEXT, environment TEXT, class_weight TEXT,
    error TEXT, reused_from TEXT, info TEXT, PRIMARY KEY (model, repeat, fold, seed_index));
CREATE INDEX IF NOT EXISTS jobs_key ON jobs (key);
CREATE TABLE IF NOT EXISTS predictions (
    job_key TEXT NOT NULL, rule TEXT NOT NULL, sample_idx INTEGER NOT NULL, probs TEXT NOT NULL,
    PRIMARY KEY (job_key, rule, sample_idx));
CREATE TABLE IF NOT EXISTS history (
    job_key TEXT NOT NULL, epoch INTEGER NOT NULL, train_loss REAL, val_loss REAL, val_acc REAL,
    val_auc REAL, PRIMARY KEY (job_key, epoch));
"""
HISTORY_COLUMNS = ("train_loss", "val_loss", "val_acc", "val_auc")


# SQLite's own wait for another connection's lock, per statement; a write retries beyond it for
# up to Store.lock_wait_s before it gives up, so that a result in hand is not lost to a brief lock.
BUSY_TIMEOUT_S = 30


class Store:
    """Reads and writes one run folder's ``cvkit.sqlite``."""

    lock_wait_s = 300.0  # how long a write waits for another program's lock on the store

    def __init__(self, run_dir, *, create: bool = False):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / STORE_NAME
        if not create and not self.path.is_file():
            raise StoreError(
                f"{self.run_dir}: no cvkit run here (missing {STORE_NAME}); "
                "pass the folder that cvkit evaluate wrote"
            )
        try:
            if create:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            self._identity = _file_identity(self.path)
        except (sqlite3.Error, OSError) as exc:
            if isinstance(exc, sqlite3.Error) and _locked(exc):
                raise StoreError(
                    f"{self.path}: another program holds the lock on {self.path}; close it (a sqlite3 "
                    "shell, a database browser, another cvkit on this folder) and run the command again"
                ) from None
            if self._read_only(exc):
                raise StoreError(
                    f"{self.run_dir}: the run folder is read-only ({exc}), and SQLite writes beside "
                    f"{STORE_NAME} even to read it: make the folder writable (chmod -R u+w, or remount "
                    "it read-write), or copy the run folder somewhere writable and pass the copy"
                ) from None
            raise StoreError(
                f"{self.path}: cannot open the run store ({exc}); it is damaged or not a cvkit "
                "store: pass another folder, or move it away and run again"
            ) from None
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: store schema {version} is not the {SCHEMA_VERSION} this cvkit "
                "reads; use the cvkit version that wrote it or start a new run folder"
            )

    def close(self):
        self.db.close()

    def check_present(self) -> None:
        """A ``StoreError`` if the store file was deleted, moved or replaced since it was opened:
        SQLite goes on writing to the deleted file, and every job saved there would be lost."""
        if _file_identity(self.path) != self._identity:
            raise StoreError(
                f"{self.run_dir}: the run folder or its {STORE_NAME} was deleted or moved while the run "
                "was going, and the jobs saved in it with it; rerun the same command to start again"
            )

    def _read_only(self, exc: Exception) -> bool:
        """Whether ``exc`` came from a folder or store file this process may not write."""
        folder = self.run_dir if self.run_dir.exists() else self.run_dir.parent
        if "readonly" in str(exc) or not os.access(folder, os.W_OK):
            return True
        return self.path.exists() and not os.access(self.path, os.W_OK)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- run description ------------------------------------------------------------------------
    def get_meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            return default
        try:
            return json.loads(row[0])
        except (ValueError, TypeError):
            raise StoreError(
                f"{self.path}: the run's description ({key}) is damaged; delete the run folder and "
                "rerun the cvkit evaluate command that made it"
            ) from None

    def set_meta(self, key: str, value) -> None:
        with self._transaction(f"the run description ({key})"):
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def write_samples(self, sample_ids, labels, groups, holdout=None) -> None:
        """The cross-validation samples, then (flagged) the hold-out samples, numbered after them."""
        rows = [
            (i, str(sample), int(label), None if groups is None else str(groups[i]), 0)
            for i, (sample, label) in enumerate(zip(sample_ids, labels))
        ]
        if holdout is not None:
            rows += [
                (len(rows) + i, str(sample), int(label), None, 1)
                for i, (sample, label) in enumerate(zip(holdout.sample_ids, holdout.labels))
            ]
        with self._transaction("the sample list"):
            self.db.execute("DELETE FROM samples")
            self.db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?)", rows)

    def write_model(self, name: str, role: str, origin: str, digest: str, hyperparams: dict) -> None:
        with self._transaction(f"model {name}"):
            self.db.execute(
                "INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?, ?)",
                (name, role, origin, digest, json.dumps(hyperparams, sort_keys=True)),
            )

    def models(self) -> list[dict]:
        rows = self.db.execute(
            "SELECT name, role, origin, digest, hyperparams FROM models ORDER BY role = 'variant', rowid"
        ).fetchall()
        return [dict(name=n, role=r, origin=o, digest=d, hyperparams=json.loads(h)) for n, r, o, d, h in rows]

    def samples(self):
        rows = self.db.execute(
            "SELECT idx, sample_id, label, grp, holdout FROM samples ORDER BY idx"
        ).fetchall()
        return rows

    # -- jobs -----------------------------------------------------------------------------------
    def done_keys(self) -> set[str]:
        return {k for (k,) in self.db.execute("SELECT key FROM jobs WHERE status = 'done'")}

    def write_result(self, result) -> None:
        """Commit one finished job (its predictions under every rule, its history) atomically."""
        job = result.job
        predictions = [
            (job.key, rule, int(i), json.dumps(p.tolist()))
            for rule, probs in result.probs_by_rule.items()
            for i, p in zip(result.test_indices, probs)
        ]
        if result.holdout_probs is not None:
            predictions += [
                (job.key, "holdout", int(i), json.dumps(p.tolist()))
                for i, p in zip(result.holdout_indices, result.holdout_probs)
            ]
        if getattr(result, "val_probs", None) is not None:
            predictions += [
                (job.key, VALIDATION_RULE, int(i), json.dumps(p.tolist()))
                for i, p in zip(result.val_indices, result.val_probs)
            ]
        history = [(job.key, r["epoch"], *(r.get(c) for c in HISTORY_COLUMNS)) for r in result.history]
        with self._transaction(_describe(job)):
            self.db.execute("DELETE FROM predictions WHERE job_key = ?", (job.key,))
            self.db.execute("DELETE FROM history WHERE job_key = ?", (job.key,))
            self.db.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?)", predictions)
            self.db.executemany("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)", history)
            self._write_job(
                job,
                "done",
                result.selected_rule,
                result.selected_epoch,
                result.duration_s,
                json.dumps(result.environment),
                json.dumps(result.class_weight),
                None,
                None,
                json.dumps(result.info),
            )

    def write_failure(self, job, error: str) -> None:
        with self._transaction(f"the failure of {_describe(job)}"):
            self._write_job(job, "failed", None, None, None, None, None, error, None)

    def link_done(self, job) -> bool:
        """Record ``job`` as done if a job with the same content key is already in this store."""
        row = self.db.execute(
            "SELECT selected_rule, selected_epoch, duration_s, environment, class_weight, "
            "reused_from, info FROM jobs WHERE key = ? AND status = 'done'",
            (job.key,),
        ).fetchone()
        if row is None:
            return False
        with self._transaction(_describe(job)):
            rule, epoch, duration, env, class_weight, reused_from, info = row
            self._write_job(job, "done", rule, epoch, duration, env, class_weight, None, reused_from, info)
        return True

    def import_job(self, job, other: Store) -> bool:
        """Copy a finished job with the same content key from another run's store (baseline reuse)."""
        row = other.db.execute(
            "SELECT selected_rule, selected_epoch, duration_s, environment, class_weight, info "
            "FROM jobs WHERE key = ? AND status = 'done'",
            (job.key,),
        ).fetchone()
        if row is None:
            return False
        predictions = other.db.execute("SELECT * FROM predictions WHERE job_key = ?", (job.key,)).fetchall()
        try:  # damaged rows elsewhere must not spread here: the job trains instead
            other._probabilities([(None,) * 5 + (rule, i, probs, key) for key, rule, i, probs in predictions])
        except StoreError:
            return False
        history = other.db.execute("SELECT * FROM history WHERE job_key = ?", (job.key,)).fetchall()
        with self._transaction(_describe(job)):
            self.db.execute("DELETE FROM predictions WHERE job_key = ?", (job.key,))
            self.db.execute("DELETE FROM history WHERE job_key = ?", (job.key,))
            self.db.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?)", predictions)
            self.db.executemany("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)", history)
            rule, epoch, duration, env, class_weight, info = row
            self._write_job(
                job, "done", rule, epoch, duration, env, class_weight, None, other.run_dir.name, info
            )
        return True

    @contextlib.contextmanager
    def _transaction(self, what: str):
        """One atomic write. Another program's lock on the store is waited out (the result in
        hand is kept meanwhile); one held for good, a full disk or a folder made read-only
        mid-run becomes one line."""
        self.check_present()
        try:
            self._begin_writing()
            with self.db:
                yield
        except sqlite3.Error as exc:
            if _locked(exc):
                raise StoreError(
                    f"{self.path}: cannot save {what}: another program holds the lock on {self.path} "
                    f"(waited {self.lock_wait_s:.0f} s); close it (a sqlite3 shell, a database browser, "
                    "another cvkit on this folder), then rerun the same command: every job saved before "
                    "is kept"
                ) from None
            raise StoreError(
                f"{self.path}: cannot save {what} ({exc}); free disk space or fix the folder's "
                "permissions, then rerun the same command: every job saved before is kept"
            ) from None

    def _begin_writing(self) -> None:
        """Take the store's write lock, retrying with a growing pause while another program holds
        it (each try already waits ``BUSY_TIMEOUT_S`` in SQLite's own busy handler), for up to
        ``lock_wait_s`` in all; then the last ``sqlite3`` error."""
        if self.db.in_transaction:  # a write already under way holds the lock: join it, as `with db` does
            return
        deadline = time.monotonic() + self.lock_wait_s
        pause = 0.5
        while True:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _locked(exc) or time.monotonic() >= deadline:
                    raise
                if pause == 0.5:
                    warnings.warn(
                        f"{self.path}: another program holds the lock on the run store; waiting up to "
                        f"{self.lock_wait_s:.0f} s for it to let go (close any sqlite3 shell or "
                        "database browser on it)",
                        stacklevel=4,
                    )
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                pause = min(2 * pause, 10.0)

    def _write_job(
        self, job, status, rule, epoch, duration, env, class_weight, error, reused_from, info=None
    ):
        self.db.execute(
            "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job.model,
                job.repeat,
                job.fold,
                job.seed_index,
                job.seed,
                job.key,
                status,
                rule,
                epoch,
                duration,
                datetime.now(timezone.utc).isoformat(timespec="seconds"),
                env,
                class_weight,
                error,
                reused_from,
                info,
            ),
        )

    def check_finished(self) -> None:
        """A ``StoreError`` unless the run is fully described and has a finished job: a run
        interrupted before that (even milliseconds after its store appeared) reads as such, not
        as a crash of whatever reads it."""
        statuses = [status for (status,) in self.db.execute("SELECT status FROM jobs")]
        if self.get_meta("identity") is None:  # written last by cvkit evaluate
            state = "it was interrupted before its description was saved"
        elif "done" in statuses:
            return
        elif "failed" in statuses:
            state = f"{statuses.count('failed')} failed, which the rerun trains again and says why"
        else:
            state = "it was interrupted before any job finished"
        raise StoreError(
            f"{self.run_dir}: this run has no finished jobs yet ({state}): rerun the same "
            "cvkit evaluate command to resume"
        )

    def jobs(self) -> list[dict]:
        cursor = self.db.execute("SELECT * FROM jobs ORDER BY model, repeat, fold, seed_index")
        names = [d[0] for d in cursor.description]
        jobs = [dict(zip(names, row)) for row in cursor.fetchall()]
        for job in jobs:  # the JSON columns that reports and verify read back
            for column in ("environment", "class_weight", "info"):
                try:
                    json.loads(job[column] or "null")
                except (ValueError, TypeError):
                    where = (job["model"], job["repeat"], job["fold"], job["seed_index"], job["key"])
                    raise self._damaged(*where, f"its {column} is not valid JSON") from None
        return jobs

    def predictions(self, *, rule: str | None = None):
        """Rows of (model, repeat, fold, seed_index, seed, rule, sample_idx, probs) for done jobs;
        ``rule=None`` gives each job's selected checkpoint."""
        condition = "p.rule = j.selected_rule" if rule is None else "p.rule = ?"
        params = () if rule is None else (rule,)
        rows = self.db.execute(
            "SELECT j.model, j.repeat, j.fold, j.seed_index, j.seed, p.rule, p.sample_idx, p.probs, j.key "
            "FROM jobs j JOIN predictions p ON p.job_key = j.key "
            f"WHERE j.status = 'done' AND {condition} "
            "ORDER BY j.model, j.repeat, j.fold, j.seed_index, p.sample_idx",
            params,
        ).fetchall()
        probs = self._probabilities(rows)
        return [(*r[:7], p) for r, p in zip(rows, probs)]

    def check_predictions(self) -> None:
        """A ``StoreError`` naming the first damaged prediction of any finished job, any rule."""
        rows = self.db.execute(
            "SELECT j.model, j.repeat, j.fold, j.seed_index, j.seed, p.rule, p.sample_idx, p.probs, j.key "
            "FROM jobs j JOIN predictions p ON p.job_key = j.key WHERE j.status = 'done' "
            "ORDER BY j.model, j.repeat, j.fold, j.seed_index, p.rule, p.sample_idx"
        ).fetchall()
        self._probabilities(rows)

    def job_predictions(self, key: str) -> dict[str, dict[int, np.ndarray]]:
        """Every stored prediction of one job: {rule: {sample index: probabilities}}."""
        rows = self.db.execute(
            "SELECT j.model, j.repeat, j.fold, j.seed_index, j.seed, p.rule, p.sample_idx, p.probs, "
            "p.job_key FROM predictions p LEFT JOIN jobs j ON j.key = p.job_key AND j.status = 'done' "
            "WHERE p.job_key = ? GROUP BY p.rule, p.sample_idx",
            (key,),
        ).fetchall()
        out: dict[str, dict[int, np.ndarray]] = {}
        for row, probs in zip(rows, self._probabilities(rows)):
            out.setdefault(row[5], {})[row[6]] = probs
        return out

    def _probabilities(self, rows) -> np.ndarray:
        """The probability rows of ``rows`` (``(model, repeat, fold, seed_index, seed, rule,
        sample_idx, probs JSON, job key)``) as one array, or a ``StoreError`` naming the first
        damaged row's job: an edited or corrupted store must not crash or skew a report."""
        run = self.get_meta("run") or {}
        n_classes = len(run.get("data", {}).get("class_names", ())) or None
        try:
            probs = np.array([json.loads(r[7]) for r in rows], dtype=np.float64)
            if not rows or (probs.ndim == 2 and _row_problem(probs, n_classes or probs.shape[1]) is None):
                return probs
        except (ValueError, TypeError):
            pass
        for row in rows:
            try:
                values = np.array(json.loads(row[7]), dtype=np.float64)
            except (ValueError, TypeError):
                values = None
            if values is None or values.ndim != 1:
                problem: str | None = "not a list of numbers"
            else:
                problem = _row_problem(values[None], n_classes or 0)
            if problem:
                raise self._prediction_damaged(row, problem)
        raise self._prediction_damaged(rows[0], "rows of different lengths")  # every row alone is fine

    def _prediction_damaged(self, row, problem: str) -> StoreError:
        model, repeat, fold, seed_index, _, rule, sample, _, key = row
        what = f"its prediction of sample {sample} under checkpoint {rule}: {problem}"
        return self._damaged(model, repeat, fold, seed_index, key, what)

    def _damaged(self, model, repeat, fold, seed_index, key, what: str) -> StoreError:
        """One line for a damaged row of one job: which job, and how to have it trained again."""
        job = f"{model} repeat {repeat} fold {fold} seed {seed_index}" if model else f"job {key}"
        return StoreError(
            f"{self.path}: {job} is damaged in the store ({what}); "
            f"have that job trained again: sqlite3 {shlex.quote(str(self.path))} "
            f"\"DELETE FROM jobs WHERE key = '{key}'\", then rerun the cvkit evaluate command that made "
            "the run (only that job trains again); or delete the run folder and start over"
        )

    def rules(self) -> list[str]:
        """Every checkpoint name stored: selection rules and ``epoch:N`` curves."""
        return [r for (r,) in self.db.execute("SELECT DISTINCT rule FROM predictions ORDER BY rule")]

    def history(self):
        cursor = self.db.execute(
            "SELECT j.model, j.repeat, j.fold, j.seed_index, h.* FROM jobs j JOIN history h "
            "ON h.job_key = j.key WHERE j.status = 'done' ORDER BY j.model, j.repeat, j.fold, "
            "j.seed_index, h.epoch"
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def _file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of ``path``, or None when it is gone: one stat call."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


# SQLite's primary result codes (sqlite3 has them as names from Python 3.11 on).
SQLITE_BUSY, SQLITE_LOCKED = 5, 6


def _locked(exc: sqlite3.Error) -> bool:
    """Whether a SQLite error means another connection holds a lock (SQLITE_BUSY or SQLITE_LOCKED)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return (code & 0xFF) in (SQLITE_BUSY, SQLITE_LOCKED) if code else "locked" in str(exc)


def _row_problem(probs: np.ndarray, n_classes: int) -> str | None:
    """What is wrong with a 2-D array of stored probability rows, or None."""
    if probs.ndim != 2 or (n_classes and probs.shape[1] != n_classes):
        return f"{probs.shape[-1] if probs.ndim else 0} values where the run has {n_classes} classes"
    if not np.isfinite(probs).all():
        return "NaN or infinite values"
    if (probs < 0).any() or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
        return "not probabilities summing to 1"
    return None


def _describe(job) -> str:
    return f"{job.model} repeat {job.repeat} fold {job.fold}"


def check_writable(run_dir, needed_bytes: int) -> None:
    """Before any training: the run folder can be created and written, and its disk has room for
    the store. Found after hours of training, either would cost the jobs in flight."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".cvkit-probe-") as probe:
            probe.write(bytes(4096))
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise StoreError(
            f"{run_dir}: cannot write the run folder ({exc.strerror or exc}); pass --out (or "
            "--reports-dir) a folder you can write to"
        ) from None
    free = shutil.disk_usage(run_dir).free
    if free < needed_bytes:
        raise StoreError(
            f"{run_dir}: {free / 2**20:.0f} MiB free on its disk, the run needs about "
            f"{needed_bytes / 2**20:.0f} MiB; free some space or pass --out a folder on another disk"
        )


def store_bytes(n_predictions: int, n_classes: int) -> int:
    """A generous size of a store holding ``n_predictions`` stored probability rows: one row is a
    few keys and a JSON list, under 40 + 25 bytes per class; twice that for the WAL and indexes,
    and 16 MiB to spare."""
    return 2 * n_predictions * (40 + 25 * n_classes) + 16 * 2**20


def sibling_stores(run_dir):
    """Stores of the other runs in the same reports folder, candidates for reusing finished jobs."""
    run_dir = Path(run_dir).resolve()
    for path in sorted(run_dir.parent.glob(f"*/{STORE_NAME}")):
        if path.parent != run_dir:
            try:
                yield Store(path.parent)
            except StoreError:
                continue  # an unreadable neighbour only means nothing to reuse from it
