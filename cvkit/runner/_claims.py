"""Job claims: which process trains which job of a run folder, so that two drivers started on the
same folder share its jobs instead of both training every one.

A driver claims a job in the run's store (one transaction) just before training it and holds a
lease that a background thread renews; a claim whose lease ran out, or whose owner is a process
of this machine that no longer runs, is free again. A paused job's state (see ``PausedJob``) is
kept under the run folder, in a folder of its owner's, which the next driver to start removes
once that owner is gone."""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from ..errors import StoreError
from ..files import STORE_NAME

# Seconds a claim lasts without renewal: an owner that stopped renewing (hung, or on another
# machine and gone) loses its jobs after that. Renewed every quarter of it.
LEASE_S = 60.0

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS claims (job_key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL)"
)
PAUSED_FOLDER = ".paused"
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"  # no dots: owners split on them
# Owners of this process whose driver has ended. Their claims are free even where deleting them
# failed (a store locked by another program): a rerun in the same process (a notebook, a test)
# would otherwise wait out the lease for claims of its own.
_ENDED_OWNERS: set[str] = set()


class JobClaims:
    """This process's claims on the jobs of the run in ``run_dir`` (whose store must exist)."""

    def __init__(self, run_dir, store_name: str = STORE_NAME, *, lease_s: float = LEASE_S):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / store_name
        self.lease_s = lease_s
        self.owner = f"{HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self.db = self._connect()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute(SCHEMA)
        return db

    @property
    def paused_dir(self) -> Path:
        """Where this process's paused jobs keep their state."""
        return self.run_dir / PAUSED_FOLDER / self.owner

    # -- claiming -----------------------------------------------------------------------------
    def claim(self, job) -> bool:
        """Claim ``job`` for this process; False when another live process holds it or has
        saved it since."""
        try:
            return self._claim(job)
        except sqlite3.Error as exc:
            raise StoreError(
                f"{self.path}: cannot claim a job before training it ({exc}); free disk space or fix "
                "the folder's permissions, then rerun the same command: every job saved before is kept"
            ) from None

    def _claim(self, job) -> bool:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute(
                "SELECT owner, expires FROM claims WHERE job_key = ?", (job.key,)
            ).fetchone()
            if row is not None and row[0] != self.owner and _alive(*row):
                self.db.execute("COMMIT")
                return False
            # Saved by another driver since this one looked: collected, not trained again.
            if self.db.execute("SELECT 1 FROM jobs WHERE key = ? AND status = 'done'", (job.key,)).fetchone():
                self.db.execute("COMMIT")
                return False
            self.db.execute(
                "INSERT OR REPLACE INTO claims VALUES (?, ?, ?)",
                (job.key, self.owner, time.time() + self.lease_s),
            )
            self.db.execute("COMMIT")
            return True
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def release(self, job) -> None:
        self.db.execute("DELETE FROM claims WHERE job_key = ? AND owner = ?", (job.key, self.owner))

    def held_elsewhere(self, job) -> bool:
        """Whether another live process holds a claim on ``job``."""
        row = self.db.execute("SELECT owner, expires FROM claims WHERE job_key = ?", (job.key,)).fetchone()
        return row is not None and row[0] != self.owner and _alive(*row)

    # -- the lease ----------------------------------------------------------------------------
    def __enter__(self):
        """Sweep the paused state of owners gone, and renew this process's leases until exit."""
        self.sweep_paused()
        self._stop.clear()
        self._heartbeat = threading.Thread(target=self._renew, name="cvkit-claims", daemon=True)
        self._heartbeat.start()
        return self

    def __exit__(self, *exc):
        _ENDED_OWNERS.add(self.owner)
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        try:
            self.db.execute("DELETE FROM claims WHERE owner = ?", (self.owner,))
        except sqlite3.Error:
            pass  # the leases run out by themselves
        shutil.rmtree(self.paused_dir, ignore_errors=True)
        self.db.close()

    def _renew(self) -> None:
        db = self._connect()  # a connection of this thread's own
        try:
            while not self._stop.wait(self.lease_s / 4):
                try:
                    db.execute(
                        "UPDATE claims SET expires = ? WHERE owner = ?",
                        (time.time() + self.lease_s, self.owner),
                    )
                except sqlite3.Error:
                    continue  # busy or briefly unwritable: the next beat tries again
        finally:
            db.close()

    def sweep_paused(self) -> None:
        """Remove the paused-state folders of owners that hold no live claim (killed drivers)."""
        folder = self.run_dir / PAUSED_FOLDER
        if not folder.is_dir():
            return
        live = {
            owner
            for owner, expires in self.db.execute("SELECT owner, expires FROM claims")
            if _alive(owner, expires)
        }
        for owned in folder.iterdir():
            if owned.name != self.owner and owned.name not in live:
                shutil.rmtree(owned, ignore_errors=True)


def _alive(owner: str, expires: float) -> bool:
    """A claim holds while its lease runs and, when its owner is a process of this machine, while
    that process runs (a killed driver's claims are free at once, not a lease later)."""
    if expires < time.time() or owner in _ENDED_OWNERS:
        return False
    host, pid, _ = owner.rsplit(".", 2)
    if host != HOST:
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
