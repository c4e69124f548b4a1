"""Runner stage: jobs, the executor that trains them, and the store that keeps every result."""
from ._executor import LocalExecutor
from ._jobs import Job, JobResult, check_probabilities, job_seed, make_jobs, run_job
from ._progress import JobProgress
from ._run import RunCounts, run_jobs
from ._store import STORE_NAME, Store

__all__ = ["STORE_NAME", "Job", "JobProgress", "JobResult", "LocalExecutor", "RunCounts", "Store",
           "check_probabilities", "job_seed", "make_jobs", "run_job", "run_jobs"]
