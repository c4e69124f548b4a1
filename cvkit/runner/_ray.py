"""Ray executor: each job is one Ray task with declared resources; only the driver writes the store.

The data set and the rest of a run's shared inputs go to Ray's object store once; tasks receive a
reference. A task whose worker process or node dies is retried by Ray (``retries`` times); a job
whose plugin raises is not retried (it would raise again) and comes back as that error.
"""

from __future__ import annotations

from ..errors import ConfigError
from ._executor import DEFAULT_RETRIES, ClaimedElsewhere, Concurrency, ExecutorSettings, register_executor
from ._worker import prepare_process

INSTALL = 'pip install -e ".[ray]"'


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


@register_executor("ray", "a Ray cluster")
class RayExecutor:
    """Runs jobs as Ray tasks on the cluster at ``address`` (``None``: start a local one)."""

    def __init__(
        self,
        address: str | None = None,
        *,
        cpus_per_job: float = 1,
        gpus_per_job: float = 0,
        threads: int = 1,
        retries: int = DEFAULT_RETRIES,
    ):
        self.address, self.cpus_per_job, self.gpus_per_job = address, cpus_per_job, gpus_per_job
        self.threads, self.retries = threads, retries

    @classmethod
    def from_settings(cls, settings: ExecutorSettings) -> RayExecutor:
        threads, execution = settings.concurrency.threads, settings.execution
        return cls(
            execution.address,
            cpus_per_job=execution.cpus_per_job or threads,
            gpus_per_job=execution.gpus_per_job,
            threads=threads,
            retries=execution.retries,
        )

    @property
    def concurrency(self) -> Concurrency:
        """What the run reports: tasks of the declared resources, as many at once as the cluster fits."""
        return Concurrency(
            0, self.threads, f"Ray tasks of {self.cpus_per_job:g} CPU, {self.gpus_per_job:g} GPU"
        )

    def map(self, work, jobs, *, on_start=None, on_epoch=None, claim=None):
        jobs = list(jobs)
        if not jobs:
            return
        ray = import_ray()
        if not ray.is_initialized():
            try:
                ray.init(
                    address=self.address,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = self.address or "a local cluster"
                raise ConfigError(
                    f"--executor ray: cannot connect to {where} ({exc}); start one with "
                    "`ray start --head` or pass --address HOST:PORT"
                ) from None
        shared = ray.put(work)
        task = ray.remote(_run_task).options(
            num_cpus=self.cpus_per_job,
            num_gpus=self.gpus_per_job,
            max_retries=self.retries,
            retry_exceptions=False,
        )
        pending = {}
        for job in jobs:
            if claim and not claim(job):
                yield job, None, ClaimedElsewhere()
                continue
            pending[task.remote(shared, job, self.threads)] = job
            if on_start:
                on_start(job)
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in done:
                    job = pending.pop(ref)
                    try:
                        yield job, ray.get(ref), None
                    except ray.exceptions.RayTaskError as exc:  # the job itself raised
                        yield job, None, exc.as_instanceof_cause()
                    except ray.exceptions.RayError as exc:  # lost worker or node, retries used up
                        yield job, None, RuntimeError(f"Ray lost the job {self.retries + 1} times: {exc}")
        finally:
            for ref in pending:  # interrupted: stop scheduling, cancel what is in flight
                ray.cancel(ref, force=True)


def _run_task(work, job, threads):
    prepare_process(threads)
    return work(job, None)
