"""Executors run jobs and hand back their outcomes; only the runner writes the store.

An executor is a class with the two methods of :class:`Executor`, made available as
``--executor NAME`` and ``evaluate(executor=NAME)`` by :func:`register_executor`.

On a CPU each job trains with a fixed number of intra-op threads (one, unless
``--threads-per-job`` says otherwise) and the cores are filled with jobs running side by side:
a job's predictions depend on its thread count, never on how many jobs run at once or where, so
every executor gives the same predictions. Small convolutional models keep two threads poorly
busy (a ResNet-18 step at 28 pixels is a chain of small kernels), so one job per core trains
about 1.5 times as many images per second as one job on both cores (722 against 490 images/s on
two cores, ``benchmarks/train_step.py``).
"""

from __future__ import annotations

import collections
import ctypes
import heapq
import math
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from ..errors import OptionError, PluginError
from ._worker import prepare_process

if TYPE_CHECKING:
    from ._jobs import Job, JobResult

# Resident memory of one CPU worker beyond its data and model: the torch runtime and allocator
# slack (a ResNet-18 job at 28 pixels measured 450-650 MiB in all).
WORKER_BASE_BYTES = 600 * 2**20


def available_cores() -> int:
    """Cores this process may use (respects CPU affinity and cgroup cpusets)."""
    return max(1, len(os.sched_getaffinity(0)))


def available_memory() -> int:
    """Bytes of memory available to new processes (MemAvailable), or 4 GiB when unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


@dataclass(frozen=True)
class Concurrency:
    """How many jobs train at once and with how many threads each, and why."""

    workers: int
    threads: int
    reason: str


def choose_concurrency(
    *,
    device: str,
    jobs: int | str = "auto",
    threads_per_job: int | None = None,
    n_parameters: int,
    sample_bytes: int,
    n_samples: int,
    batch_size: int,
) -> Concurrency:
    """The number of side-by-side jobs: ``jobs`` when given, else as many as the cores (CPU) or
    the GPU (several small jobs keep one GPU busy; one large one already does) allow, within the
    available memory. Each job's memory is estimated from its model (weights, gradients and Adam
    state: 16 bytes per parameter), its data (float32 copies of the images) and its batch's
    activations (about 200 floats per input value for a ResNet)."""
    threads = threads_per_job or 1
    cores = available_cores()
    per_job = (
        WORKER_BASE_BYTES + 16 * n_parameters + 2 * n_samples * sample_bytes + 200 * batch_size * sample_bytes
    )
    if jobs != "auto":
        return Concurrency(
            int(jobs), threads, f"{jobs} at a time, {threads} thread{'s' * (threads > 1)} each"
        )
    by_memory = max(1, int(0.8 * available_memory() // per_job))
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        gpu_per_job = 16 * n_parameters + 4 * n_samples * sample_bytes + 200 * batch_size * sample_bytes
        # Launch-bound small jobs: concurrency pays up to a handful of processes per GPU.
        small = sample_bytes <= 64 * 64 * 3 * 4
        wanted = min(8 if small else 2, max(1, int(0.8 * free // max(gpu_per_job, 1))))
        workers = max(1, min(wanted, cores, by_memory))
        return Concurrency(workers, threads, f"{workers} at a time on the GPU")
    workers = max(1, min(cores // threads, by_memory))
    limit = "memory" if by_memory < cores // threads else "cores"
    return Concurrency(
        workers,
        threads,
        f"{workers} at a time, {threads} thread{'s' * (threads > 1)} each, limited by {limit}",
    )


# Seconds a worker may take to exit once its pool is closed; one still running after that is stuck
# (a thread its plugin left running keeps the interpreter from exiting) and is ended.
WORKER_EXIT_GRACE_S = 5.0


class ClaimedElsewhere(Exception):
    """The job was not started: another process on the same run folder holds its claim."""


DEFAULT_RETRIES = 2  # runs of a job whose worker died, beyond the first: the one default


@dataclass(frozen=True)
class Execution:
    """How a run's jobs are executed; none of it changes a prediction except ``threads_per_job``.

    Parameters
    ----------
    executor : str, default="local"
        A registered executor (:data:`EXECUTORS`): ``"local"`` (worker processes on this
        machine, one even for ``jobs=1``, so that a plugin ending its process fails only its
        job), ``"process"`` (the same), ``"inprocess"`` (one job after another in this process:
        for a debugger), ``"ray"``, or any registered with :func:`register_executor`.
    jobs : int or "auto", default="auto"
        Trainings run side by side; ``"auto"``: as many as the cores or the GPU and the memory
        allow.
    threads_per_job : int or None, default=None
        Intra-op CPU threads of each training (None: 1). Unlike ``jobs``, it can change the
        predictions' last bits, and is part of every job key.
    retries : int, default=2
        Runs of a job whose worker process died (killed, out of memory), beyond the first.
    address : str or None, default=None
        Ray: the cluster's ``HOST:PORT``; None starts a local one.
    cpus_per_job : float or None, default=None
        Ray: CPUs each task declares; None: its threads.
    gpus_per_job : float, default=0.0
        Ray: GPUs each task declares (0.25 shares one GPU among four tasks).

    Raises
    ------
    OptionError
        An unknown executor or a value out of its range, naming the parameter.
    """

    executor: str = "local"
    jobs: int | str = "auto"
    threads_per_job: int | None = None
    retries: int = DEFAULT_RETRIES
    address: str | None = None
    cpus_per_job: float | None = None
    gpus_per_job: float = 0.0

    def __post_init__(self):
        if self.executor not in EXECUTORS:
            raise OptionError("executor", f"{self.executor!r}: choose one of {', '.join(EXECUTORS)}")
        if self.jobs != "auto" and not (isinstance(self.jobs, int) and self.jobs >= 1):
            raise OptionError("jobs", f"must be auto or a number of at least 1, got {self.jobs!r}")
        if self.threads_per_job is not None and self.threads_per_job < 1:
            raise OptionError("threads_per_job", f"must be at least 1, got {self.threads_per_job}")
        if self.retries < 0:
            raise OptionError("retries", f"must be at least 0, got {self.retries}")
        for option, zero_allowed in (("cpus_per_job", False), ("gpus_per_job", True)):
            value = getattr(self, option)
            if value is not None and not (
                math.isfinite(value) and (value > 0 or (zero_allowed and value == 0))
            ):
                bound = "of at least 0" if zero_allowed else "above 0"
                raise OptionError(option, f"must be a finite number {bound}, got {value}")


@dataclass(frozen=True)
class ExecutorSettings:
    """What a run asks of its executor: the user's :class:`Execution`, and how many jobs train at
    once with how many threads, and where, as the run worked them out. Each executor takes the
    settings that apply to it."""

    concurrency: Concurrency  # jobs at once (``workers``) and intra-op threads per job (``threads``)
    device: str = "cpu"  # where jobs train: "cpu", "cuda", "cuda:1"
    execution: Execution = field(default_factory=Execution)


@runtime_checkable
class Executor(Protocol):
    """Runs jobs and hands back their outcomes; the runner alone writes the store.

    ``from_settings(settings)``
        A classmethod: the executor for a run's :class:`ExecutorSettings`.
    ``map(work, jobs, *, on_start=None, on_epoch=None, claim=None)``
        A generator that yields ``(job, result, error)`` per job as jobs finish: exactly one of
        ``result`` (a ``JobResult``) and ``error`` (the exception the job raised) is None.
        ``work(job, on_epoch)`` trains one job and returns its result; it is picklable, to be sent
        to other processes. ``on_start(job)``, when given, is called as a job starts, and
        ``on_epoch(job, record)`` in the caller's process after each epoch a job trains.
        ``claim(job)``, when given, is asked just before a job starts: a job it refuses (another
        process is training it) is yielded with a ``ClaimedElsewhere`` error and not trained.
        Closing the generator (the runner does on Ctrl-C) stops the jobs in flight.

    An executor may also have a ``concurrency`` attribute (a :class:`Concurrency`): what the run
    reports as its concurrency when the settings' own does not describe it (Ray's tasks).

    Before training, each process that trains jobs calls ``prepare_process(threads)``: the
    predictions depend on the thread count. The process executor may also train a pausable job in
    two parts, ``work(job, on_epoch, stop_after=k)`` then ``work(job, on_epoch, resume=paused)``
    (see ``plan_parts``).
    """

    @classmethod
    def from_settings(cls, settings: ExecutorSettings) -> Executor: ...

    def map(
        self,
        work: Callable[..., JobResult],
        jobs: Iterable[Job],
        *,
        on_start: Callable[[Job], None] | None = None,
        on_epoch: Callable[[Job, dict], None] | None = None,
        claim: Callable[[Job], bool] | None = None,
    ) -> Generator[tuple[Job, JobResult | None, BaseException | None], None, None]: ...


class RegisteredExecutor(NamedTuple):
    executor: type[Executor]
    summary: str  # what it does, for --help


# Every executor by name, in the order --help lists them (filled by ``register_executor``).
EXECUTORS: dict[str, RegisteredExecutor] = {}


def register_executor(name: str, summary: str):
    """Class decorator: make an :class:`Executor` available as ``--executor NAME`` and
    ``evaluate(executor=NAME)``; ``summary`` says what it does in ``cvkit evaluate --help``."""

    def register(cls: type[Executor]) -> type[Executor]:
        if not issubclass(cls, Executor):
            raise TypeError(
                f"{cls.__name__} is no executor: it needs from_settings(settings) and map(work, jobs)"
            )
        if name in EXECUTORS:
            raise ValueError(f"an executor named {name!r} is registered already")
        EXECUTORS[name] = RegisteredExecutor(cls, summary)
        return cls

    return register


def make_executor(kind: str, settings: ExecutorSettings) -> Executor:
    """The executor registered as ``kind``, built for ``settings``."""
    return EXECUTORS[kind].executor.from_settings(settings)


# Decorators apply bottom-up: "local" is registered first, and --help lists it first.
@register_executor("process", "the same")
@register_executor("local", "worker processes on this machine")
class ProcessExecutor:
    """Runs jobs in ``workers`` worker processes, each job with ``threads`` threads: a plugin that
    ends its process, crashes or is killed costs only its job, never the run.

    ``work`` is handed to each worker once, not per job; epochs finished in the workers reach
    ``on_epoch`` through a queue. A worker that dies (killed, out of memory) loses only the jobs
    in flight: they run again in a fresh pool, up to ``retries`` times. A worker that exits by
    itself (a plugin calling ``os._exit``) fails its job at once, and one whose plugin left threads
    running fails its job and is ended when the pool closes. Ctrl-C stops scheduling, stops the
    jobs in flight and returns what has finished; workers die with the process that started them."""

    def __init__(
        self, workers: int, threads: int = 1, *, device: str = "cpu", retries: int = DEFAULT_RETRIES
    ):
        self.workers, self.threads, self.retries = workers, threads, retries
        # CPU jobs of one thread: fork, so that workers share the parent's imported modules page
        # for page. Several threads per job: a parent that ran torch on several threads (the
        # pre-flight, a notebook cell, an earlier run in the same process) forks libgomp's thread
        # pool half-alive, and the child's first parallel region waits for threads that were not
        # forked (seen: a worker hung in Conv2d with threads_per_job=2); a job of one thread never
        # enters that pool. A GPU cannot be used in a forked child once the parent touched CUDA.
        # Both get a fork server, started clean with torch imported: workers in a fraction of a
        # second.
        self.start_method = "fork" if device == "cpu" and threads <= 1 else "forkserver"

    @classmethod
    def from_settings(cls, settings: ExecutorSettings) -> ProcessExecutor:
        concurrency = settings.concurrency
        return cls(
            concurrency.workers,
            concurrency.threads,
            device=settings.device,
            retries=settings.execution.retries,
        )

    def map(self, work, jobs, *, on_start=None, on_epoch=None, claim=None):
        jobs = list(jobs)
        if not jobs:
            return
        context = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            context.set_forkserver_preload(["torch", "cvkit.runner", "cvkit.trainers"])
        epochs = context.SimpleQueue() if on_epoch else None
        # (worker pid, job key) as each task starts: a worker that ends on its own names its job.
        starts = context.SimpleQueue()
        size = min(self.workers, len(jobs))
        # A forked worker's parent is this process; a fork server's is the server.
        driver = os.getpid() if self.start_method == "fork" else None

        def new_pool():
            return ProcessPoolExecutor(
                size,
                mp_context=context,
                initializer=_init_worker,
                initargs=(work, self.threads, epochs, starts, driver),
            )

        pool = new_pool()
        # Tasks are (job, stop_after, paused): a whole job, a job's first epochs, or the rest of a
        # paused job, queued last when its first part is done (plan_parts).
        waiting = collections.deque(
            (job, stop_after, None) for job, stop_after in _queue(jobs, plan_parts(jobs, size))
        )
        running: dict = {}  # future -> (task, the pool it runs in)
        losses: collections.Counter = collections.Counter()  # how often a job's worker process died under it
        by_key = {job.key: job for job in jobs}
        worker_of: dict[str, int] = {}  # job key -> pid of the worker that started it last
        exits: dict = {}  # broken pool -> {pid: exit code} of its workers
        try:
            while waiting or running:
                while waiting and len(running) < size:
                    task = waiting.popleft()
                    if task[2] is None and claim and not claim(task[0]):
                        yield task[0], None, ClaimedElsewhere()
                        continue
                    try:
                        running[pool.submit(_run_in_worker, task)] = (task, pool)
                    except BrokenProcessPool:  # a worker died since the last look
                        waiting.appendleft(task)
                        if any(its_pool is pool for _, its_pool in running.values()):
                            break  # its tasks in flight say how, and replace it
                        pool.shutdown(wait=True, cancel_futures=True)
                        pool = new_pool()
                        continue
                    if on_start:
                        on_start(task[0])
                finished, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(epochs, on_epoch, by_key)
                while not starts.empty():
                    pid, key = starts.get()
                    worker_of[key] = pid
                for future in finished:
                    task, its_pool = running.pop(future)
                    job = task[0]
                    error = future.exception()
                    if isinstance(error, BrokenProcessPool):
                        if its_pool not in exits:
                            exits[its_pool] = _exit_codes(its_pool)
                        if its_pool is pool:
                            pool.shutdown(wait=True, cancel_futures=True)
                            pool = new_pool()
                        codes = exits[its_pool]
                        code = codes.get(worker_of.get(job.key))
                        if code is not None and code >= 0:
                            # The worker exited by itself (os._exit, exit in a thread): the plugin
                            # ended it, and would again.
                            error = PluginError(
                                f"{job.plugin.origin}: {job.model} ended its worker process (exit "
                                f"code {code}) on repeat {job.repeat}, fold {job.fold}; a plugin must "
                                "raise an exception, never call os._exit or exit the process"
                            )
                        elif code == -signal.SIGTERM and any(c != -signal.SIGTERM for c in codes.values()):
                            # Ended by the pool because another worker died: lost through no fault of its own.
                            waiting.appendleft(task)
                            continue
                        else:
                            # Killed (by a signal, out of memory): the tasks in flight are lost, not failed.
                            losses[job.key] += 1
                            if losses[job.key] <= self.retries:
                                waiting.appendleft(task)
                                continue
                            error = RuntimeError(
                                f"the worker process training it died {losses[job.key]} times "
                                "(killed, or out of memory?)"
                            )
                    if error is None and task[1] is not None:
                        waiting.append((job, None, future.result()))
                        continue
                    if task[2] is not None:
                        task[2].discard()
                    yield job, (None if error else future.result()), error
            _drain(epochs, on_epoch, by_key)
        finally:
            for future in running:
                future.cancel()
            if running:  # interrupted: end the jobs in flight now rather than after their last epoch
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.terminate()
            _close(pool)
            for _, _, paused in [*waiting, *(task for task, _ in running.values())]:
                if paused is not None:  # interrupted between a job's two parts: it trains again next time
                    paused.discard()


@register_executor("inprocess", "one job after another in this process (for a debugger)")
class InProcessExecutor:
    """Runs jobs one after another in this process: for a debugger, or code patched in this
    process (a plugin calling ``os._exit`` ends the run here)."""

    def __init__(self, threads: int = 1):
        self.threads = threads

    @classmethod
    def from_settings(cls, settings: ExecutorSettings) -> InProcessExecutor:
        return cls(settings.concurrency.threads)

    def map(self, work, jobs, *, on_start=None, on_epoch=None, claim=None):
        prepare_process(self.threads)
        for job in jobs:
            if claim and not claim(job):
                yield job, None, ClaimedElsewhere()
                continue
            if on_start:
                on_start(job)
            threads = set(threading.enumerate())
            try:
                result = work(job, on_epoch)
            except Exception as exc:  # handed to the runner, which records and decides
                yield job, None, exc
                continue
            stray = _stray_threads(threads, job)
            yield (job, None, stray) if stray else (job, result, None)


def _exit_codes(pool) -> dict[int, int | None]:
    """The exit codes of a broken pool's workers by pid (negative: killed by that signal)."""
    processes = dict(getattr(pool, "_processes", None) or {})
    for process in processes.values():
        process.join(timeout=5)  # the pool is ending the survivors
    return {pid: process.exitcode for pid, process in processes.items()}


def _close(pool) -> None:
    """Shut ``pool`` down without hanging on a worker that cannot exit (a non-daemon thread left
    by a plugin keeps its interpreter waiting forever): such a worker is ended."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=WORKER_EXIT_GRACE_S)
        if process.exitcode is None:
            process.kill()
    pool.shutdown(wait=True)


def plan_parts(jobs, workers: int) -> dict[str, int]:
    """The jobs to train in two parts, by key, with the epochs of their first part.

    Jobs that do not fill the last round leave workers idle at the end: 15 equal jobs on 2
    workers take 8 rounds, the last with one worker idle. Training the first epochs of a pausable
    job first and the rest last, on whichever worker frees up, fills that gap (7.6 rounds at 5
    epochs). Part sizes and the number of split jobs are chosen by simulating the executor's
    queue with every epoch costing the same (the cost of a job is not known before it runs);
    jobs are split only when that saves a whole epoch of the run."""
    # The last jobs would fill the last round: split among them, whose cost the rest of the last
    # round matches.
    pausable = [job for job in reversed(jobs) if job.pausable_epochs > 1]
    best, best_span = {}, _span(jobs, {}, workers)
    epochs = pausable[0].pausable_epochs if pausable else 0
    firsts = sorted({min(epochs - 1, max(1, round(epochs * f))) for f in (1 / 4, 1 / 3, 1 / 2, 2 / 3, 3 / 4)})
    for n_split in range(1, min(workers, len(pausable)) + 1):
        for first in firsts:
            candidate = {job.key: min(first, job.pausable_epochs - 1) for job in pausable[:n_split]}
            span = _span(jobs, candidate, workers)
            if span <= best_span - 1:
                best, best_span = candidate, span
    return best


def _span(jobs, parts: dict[str, int], workers: int) -> int:
    """Epochs until the last of ``jobs`` is done on ``workers`` when ``parts`` are trained in
    two parts, dispatched as ``ProcessExecutor.map`` does, each epoch taking one unit."""

    def length(job):
        return max(job.pausable_epochs, 1)

    waiting = collections.deque((stop_after or length(job), job) for job, stop_after in _queue(jobs, parts))
    free = [0] * workers  # when each worker is free
    done: list[tuple[int, int]] = []  # (time, remaining epochs of a paused job) not yet queued
    end = 0
    while waiting or done:
        now = heapq.heappop(free)
        while done and done[0][0] <= now:
            waiting.append((heapq.heappop(done)[1], None))
        if not waiting:  # the rest of a paused job is not ready yet: wait for its first part
            heapq.heappush(free, done[0][0])
            continue
        epochs, job = waiting.popleft()
        finish = now + epochs
        end = max(end, finish)
        if job is not None and job.key in parts:
            heapq.heappush(done, (finish, length(job) - epochs))
        heapq.heappush(free, finish)
    return end


def _queue(jobs, parts: dict[str, int]) -> list[tuple]:
    """(job, epochs of its first part or None) in the order they start: first parts, then whole jobs."""
    return [(job, parts[job.key]) for job in jobs if job.key in parts] + [
        (job, None) for job in jobs if job.key not in parts
    ]


def _drain(epochs, on_epoch, by_key):
    """Hand the epochs the workers reported to ``on_epoch``."""
    if epochs is None:
        return
    while not epochs.empty():
        key, record = epochs.get()
        on_epoch(by_key[key], record)


_WORKER: dict = {}


def _init_worker(work, threads, epochs, starts, driver):
    # The parent handles Ctrl-C and ends the workers; a worker must not die mid-write on its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked worker inherits the driver's SIGTERM handler (stop as Ctrl-C does): the pool ends
    # its workers with SIGTERM, which must end them, not raise in them.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with(driver)
    # A forked child inherits the parent's stdout/stderr objects with whatever locks another
    # thread (the progress display) held at the fork: give it fresh ones on the same files.
    sys.stdout = open(os.dup(1), "w", buffering=1, closefd=True)
    sys.stderr = open(os.dup(2), "w", buffering=1, closefd=True)
    prepare_process(threads)
    _WORKER.update(work=work, epochs=epochs, starts=starts)


def _die_with(driver: int | None) -> None:
    """End this worker when the driver process ends, however it ends (SIGKILL included): a
    worker orphaned with a model in memory would otherwise wait for work forever. Linux tells the
    child directly (PR_SET_PDEATHSIG; a fork-server worker hears of its fork server, which exits
    with the driver); elsewhere a thread watches the parent."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # PR_SET_PDEATHSIG
            if driver is not None and os.getppid() != driver:
                os._exit(1)  # the driver died before the request was made
            return
    except (OSError, AttributeError):
        pass
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            threading.Event().wait(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="cvkit-parent-watch", daemon=True).start()


def _run_in_worker(task):
    job, stop_after, paused = task
    epochs = _WORKER["epochs"]
    _WORKER["starts"].put((os.getpid(), job.key))
    # Only the key travels back: unpickling a job in the parent would load its plugin again.
    report = None if epochs is None else (lambda job, record: epochs.put((job.key, record)))
    threads = set(threading.enumerate())
    if stop_after is None and paused is None:
        result = _WORKER["work"](job, report)
    else:
        result = _WORKER["work"](job, report, stop_after=stop_after, resume=paused)
    stray = _stray_threads(threads, job)
    if stray:
        if stop_after is not None:
            result.discard()
        raise stray
    return result


def _stray_threads(before: set, job) -> PluginError | None:
    """A ``PluginError`` naming the plugin when training ``job`` left non-daemon threads running:
    they would keep the process from ever exiting."""
    stray = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
    if not stray:
        return None
    names = ", ".join(t.name for t in stray)
    return PluginError(
        f"{job.plugin.origin}: {job.model} left {len(stray)} thread{'s' * (len(stray) > 1)} running "
        f"after training on repeat {job.repeat}, fold {job.fold} ({names}); join the threads it "
        "starts before fit returns, or start them with daemon=True"
    )
