"""Runner stage: jobs, the executor that trains them, and the store that keeps every result."""

from ._claims import JobClaims
from ._executor import (
    DEFAULT_RETRIES,
    EXECUTORS,
    ClaimedElsewhere,
    Concurrency,
    Execution,
    Executor,
    ExecutorSettings,
    InProcessExecutor,
    ProcessExecutor,
    choose_concurrency,
    make_executor,
    register_executor,
)
from ._jobs import Job, JobResult, JobRunner, check_probabilities, job_seed, make_jobs, run_job
from ._progress import JobProgress
from ._ray import RayExecutor
from ._run import RunCounts, run_jobs
from ._store import STORE_NAME, VALIDATION_RULE, Store, check_writable, store_bytes
from ._verify import GPU_TOLERANCE, JobCheck, Verification, verify_jobs
from ._worker import prepare_process

__all__ = [
    "DEFAULT_RETRIES",
    "EXECUTORS",
    "GPU_TOLERANCE",
    "STORE_NAME",
    "VALIDATION_RULE",
    "ClaimedElsewhere",
    "Concurrency",
    "Executor",
    "Execution",
    "ExecutorSettings",
    "InProcessExecutor",
    "Job",
    "JobCheck",
    "JobClaims",
    "JobProgress",
    "JobResult",
    "JobRunner",
    "ProcessExecutor",
    "RayExecutor",
    "RunCounts",
    "Store",
    "Verification",
    "check_probabilities",
    "check_writable",
    "choose_concurrency",
    "job_seed",
    "make_executor",
    "make_jobs",
    "prepare_process",
    "register_executor",
    "run_job",
    "run_jobs",
    "store_bytes",
    "verify_jobs",
]
