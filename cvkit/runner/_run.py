"""Bring a run's store up to date: skip finished jobs, reuse identical ones, train the rest."""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass

from ..errors import JobsFailed
from ._executor import ClaimedElsewhere, InProcessExecutor
from ._jobs import describe_failure
from ._store import sibling_stores


@dataclass
class RunCounts:
    trained: int = 0
    resumed: int = 0
    reused: int = 0
    failed: int = 0


def run_jobs(
    jobs, store, work, *, executor=None, progress=None, claims=None, poll_s: float = 1.0
) -> RunCounts:
    """Make every job of ``jobs`` done in ``store``.

    A job already done in this store is skipped (resume); one whose content key is done in
    another run of the same reports folder is copied from there (e.g. an unchanged baseline);
    the rest go to ``executor`` and each result is committed as soon as it arrives, so an
    interrupted run loses at most the jobs in flight. A job that fails is recorded in the store
    with its error while the others go on.

    Parameters
    ----------
    jobs : sequence of Job
        The run's jobs (``make_jobs``).
    store : Store
        The run's open store; only this function writes it.
    work : callable
        ``work(job, on_epoch)`` trains one job and returns its ``JobResult`` (a ``JobRunner``).
    executor : Executor or None, default=None
        What trains the jobs; None: an ``InProcessExecutor``.
    progress : display or None, default=None
        Told of the jobs as they start and end and of every epoch (``JobProgress``).
    claims : JobClaims or None, default=None
        Claims on the same run folder: each job is claimed just before it trains; a job another
        live driver holds is left to it, and trained here only if that driver ends without
        finishing it, so that drivers started together on one folder train every job once.
    poll_s : float, default=1.0
        Seconds between looks at jobs another driver holds.

    Returns
    -------
    RunCounts
        How many jobs were trained, resumed, reused from another run, and failed.

    Raises
    ------
    JobsFailed
        Some jobs failed; every other job is done and saved, and a rerun trains only the failed.
    """
    counts = RunCounts()
    done = store.done_keys()
    pending = []
    for job in jobs:
        if job.key in done:
            store.link_done(job)
            counts.resumed += 1
        else:
            pending.append(job)
    if pending:
        for other in sibling_stores(store.run_dir):
            with other:
                available = other.done_keys()
                still = []
                for job in pending:
                    if job.key in available and store.import_job(job, other):
                        counts.reused += 1
                    else:
                        still.append(job)
                pending = still

    executor = executor or InProcessExecutor()
    if progress:
        progress.start(len(jobs), len(jobs) - len(pending))
    failures: list[tuple] = []
    with claims or contextlib.nullcontext():
        while pending:
            elsewhere = _train(pending, store, work, executor, progress, claims, counts, failures)
            pending = _wait_for_others(elsewhere, store, claims, progress, counts, failures, poll_s)
    counts.failed = len(failures)
    if failures:
        raise JobsFailed(failures, len(jobs))
    return counts


def _train(jobs, store, work, executor, progress, claims, counts, failures) -> list:
    """Train ``jobs`` and save each outcome; return the jobs another driver holds, each with its
    state in the store when it was found held."""

    def on_start(job):
        store.check_present()  # a run folder deleted mid-run is noticed at the next job, not at the end
        if progress:
            progress.job_started(job)

    outcomes = executor.map(
        work,
        jobs,
        on_start=on_start,
        on_epoch=progress.epoch_done if progress else None,
        **({"claim": claims.claim} if claims else {}),
    )
    elsewhere = []
    try:
        for job, result, error in outcomes:
            if isinstance(error, ClaimedElsewhere):
                elsewhere.append((job, _state(store, job)))
                continue
            if error is None:
                store.write_result(result)
                counts.trained += 1
            else:
                store.write_failure(job, describe_failure(error))
                failures.append((job, error))
            if claims:
                claims.release(job)
            if progress:
                progress.job_done(job)
    finally:
        outcomes.close()  # on Ctrl-C: the executor stops its workers now
    return elsewhere


def _wait_for_others(held, store, claims, progress, counts, failures, poll_s) -> list:
    """Wait until no other live driver holds any of the ``held`` jobs; keep what it saved of them
    and return the rest (its driver ended without them), which this one trains."""
    if not held:
        return []
    jobs = [job for job, _ in held]
    before = {job.key: state for job, state in held}
    warnings.warn(
        f"{len(jobs)} jobs were claimed by another cvkit process on {store.run_dir}; "
        "waiting for it to finish them",
        stacklevel=3,
    )
    waiting, left = list(jobs), []
    while waiting:
        time.sleep(poll_s)
        still = []
        for job in waiting:
            if claims.held_elsewhere(job):
                still.append(job)
                continue
            status, error, _ = after = _state(store, job)
            if status == "done":
                store.link_done(job)
                counts.resumed += 1
            elif status == "failed" and after != before[job.key]:
                last = error.strip().splitlines()[-1] if error else "failed"
                failures.append(
                    (job, RuntimeError(f"failed in another cvkit process on this run folder: {last}"))
                )
            else:
                left.append(job)  # its driver ended without saving it
                continue
            if progress:
                progress.job_done(job)
        waiting = still
    return left


def _state(store, job) -> tuple:
    """(status, error, finished at) of ``job`` as the store holds it now: another driver may have
    written it."""
    row = store.db.execute(
        "SELECT status, error, finished_at FROM jobs WHERE model = ? AND repeat = ? AND fold = ? "
        "AND seed_index = ?",
        (job.model, job.repeat, job.fold, job.seed_index),
    ).fetchone()
    return tuple(row) if row else (None, None, None)
