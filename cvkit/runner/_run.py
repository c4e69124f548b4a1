"""Bring a run's store up to date: skip finished jobs, reuse identical ones, train the rest."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import JobsFailed
from ._executor import LocalExecutor
from ._jobs import describe_failure
from ._store import sibling_stores


@dataclass
class RunCounts:
    trained: int = 0
    resumed: int = 0
    reused: int = 0
    failed: int = 0


def run_jobs(jobs, store, work, *, executor=None, progress=None) -> RunCounts:
    """Make every job of ``jobs`` done in ``store``.

    A job already done in this store is skipped (resume); one whose content key is done in
    another run of the same reports folder is copied from there (e.g. an unchanged baseline);
    the rest go to ``executor`` (``work(job, on_epoch)`` trains one) and each result is committed
    as soon as it arrives, so an interrupted run loses at most the jobs in flight. A job that
    fails is recorded in the store with its error while the others go on; ``JobsFailed`` then
    names the failures, and a rerun trains only them.
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

    executor = executor or LocalExecutor()
    if progress:
        progress.start(len(jobs), len(jobs) - len(pending))

    def on_start(job):
        store.check_present()  # a run folder deleted mid-run is noticed at the next job, not at the end
        if progress:
            progress.job_started(job)

    outcomes = executor.map(
        work, pending, on_start=on_start, on_epoch=progress.epoch_done if progress else None
    )
    failures = []
    try:
        for job, result, error in outcomes:
            if error is None:
                store.write_result(result)
                counts.trained += 1
            else:
                store.write_failure(job, describe_failure(error))
                failures.append((job, error))
            if progress:
                progress.job_done(job)
    finally:
        outcomes.close()  # on Ctrl-C: the executor stops its workers now
    counts.failed = len(failures)
    if failures:
        raise JobsFailed(failures, len(jobs))
    return counts
