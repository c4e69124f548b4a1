"""Executors run jobs and hand back their outcomes; only the runner writes the store."""
from __future__ import annotations


class LocalExecutor:
    """Runs jobs one after another in this process (torch uses every core for each job).

    ``map`` yields ``(job, result, error)`` per job: exactly one of result and error is None."""

    def map(self, work, jobs, *, on_start=None):
        for job in jobs:
            if on_start:
                on_start(job)
            try:
                yield job, work(job), None
            except Exception as exc:  # handed to the runner, which records and decides
                yield job, None, exc
