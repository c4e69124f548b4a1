"""Executors run jobs and hand back their outcomes; only the runner writes the store.

Every executor has ``map(work, jobs, *, on_start=None, on_epoch=None)``, which yields
``(job, result, error)`` per job as jobs finish (exactly one of result and error is None).
``work`` is a picklable callable ``work(job, on_epoch)``; the process executor may also train a
pausable job in two parts, ``work(job, on_epoch, stop_after=k)`` then
``work(job, on_epoch, resume=paused)`` (see ``plan_parts``).

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
import multiprocessing
import os
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

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


EXECUTORS = ("local", "process", "ray")


def make_executor(
    concurrency: Concurrency,
    device: str = "cpu",
    *,
    kind: str = "local",
    address: str | None = None,
    cpus_per_job: float | None = None,
    gpus_per_job: float = 0.0,
    retries: int = 2,
):
    """``local``: this machine, one job in this process or several in worker processes;
    ``process``: always worker processes (a crashing job cannot take the run down);
    ``ray``: Ray tasks on the cluster at ``address`` (a local one when None)."""
    if kind == "ray":
        from ._ray import RayExecutor

        return RayExecutor(
            address,
            cpus_per_job=cpus_per_job or concurrency.threads,
            gpus_per_job=gpus_per_job,
            threads=concurrency.threads,
            retries=retries,
        )
    if kind == "local" and concurrency.workers <= 1:
        return LocalExecutor(concurrency.threads)
    return ProcessExecutor(concurrency.workers, concurrency.threads, device=device, retries=retries)


class LocalExecutor:
    """Runs jobs one after another in this process."""

    def __init__(self, threads: int = 1):
        self.threads = threads

    def map(self, work, jobs, *, on_start=None, on_epoch=None):
        _prepare_process(self.threads)
        for job in jobs:
            if on_start:
                on_start(job)
            try:
                yield job, work(job, on_epoch), None
            except Exception as exc:  # handed to the runner, which records and decides
                yield job, None, exc


class ProcessExecutor:
    """Runs jobs in ``workers`` worker processes, each job with ``threads`` threads.

    ``work`` is handed to each worker once, not per job; epochs finished in the workers reach
    ``on_epoch`` through a queue. A worker that dies (killed, out of memory) loses only the jobs
    in flight: they run again in a fresh pool, up to ``retries`` times. Ctrl-C stops scheduling,
    stops the jobs in flight and returns what has finished."""

    def __init__(self, workers: int, threads: int = 1, *, device: str = "cpu", retries: int = 2):
        self.workers, self.threads, self.retries = workers, threads, retries
        # CPU: fork, so that workers share the parent's imported modules page for page (the
        # parent has run no torch computation, so no thread pool is forked half-alive). A GPU
        # cannot be used in a forked child once the parent touched CUDA: a fork server with torch
        # imported starts clean workers in a fraction of a second.
        self.start_method = "fork" if device == "cpu" else "forkserver"

    def map(self, work, jobs, *, on_start=None, on_epoch=None):
        jobs = list(jobs)
        if not jobs:
            return
        context = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            context.set_forkserver_preload(["torch", "cvkit.runner", "cvkit.trainers"])
        epochs = context.SimpleQueue() if on_epoch else None
        size = min(self.workers, len(jobs))

        def new_pool():
            return ProcessPoolExecutor(
                size, mp_context=context, initializer=_init_worker, initargs=(work, self.threads, epochs)
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
        try:
            while waiting or running:
                while waiting and len(running) < size:
                    task = waiting.popleft()
                    running[pool.submit(_run_in_worker, task)] = (task, pool)
                    if on_start:
                        on_start(task[0])
                finished, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(epochs, on_epoch, by_key)
                for future in finished:
                    task, its_pool = running.pop(future)
                    job = task[0]
                    error = future.exception()
                    if isinstance(error, BrokenProcessPool):
                        # A worker died (killed, out of memory): the tasks in flight are lost, not failed.
                        if its_pool is pool:
                            pool.shutdown(wait=True, cancel_futures=True)
                            pool = new_pool()
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
            pool.shutdown(wait=True, cancel_futures=True)
            for _, _, paused in [*waiting, *(task for task, _ in running.values())]:
                if paused is not None:  # interrupted between a job's two parts: it trains again next time
                    paused.discard()


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


def _init_worker(work, threads, epochs):
    # The parent handles Ctrl-C and ends the workers; a worker must not die mid-write on its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked child inherits the parent's stdout/stderr objects with whatever locks another
    # thread (the progress display) held at the fork: give it fresh ones on the same files.
    sys.stdout = open(os.dup(1), "w", buffering=1, closefd=True)
    sys.stderr = open(os.dup(2), "w", buffering=1, closefd=True)
    _prepare_process(threads)
    _WORKER.update(work=work, epochs=epochs)


def _run_in_worker(task):
    job, stop_after, paused = task
    epochs = _WORKER["epochs"]
    # Only the key travels back: unpickling a job in the parent would load its plugin again.
    report = None if epochs is None else (lambda job, record: epochs.put((job.key, record)))
    if stop_after is None and paused is None:
        return _WORKER["work"](job, report)
    return _WORKER["work"](job, report, stop_after=stop_after, resume=paused)


def _prepare_process(threads: int) -> None:
    """Fix this process's thread count (predictions depend on it) and keep freed tensor memory
    in the heap. By default glibc serves every block over a few MiB with a fresh mmap and hands
    it back when freed, so each training step page-faults its large gradients in again (a
    ResNet-18's 9 MiB layer4 weights): about a tenth of a small CPU step."""
    import torch

    torch.set_num_threads(threads)
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD: blocks under 32 MiB come from the heap
    libc.mallopt(-1, 256 * 2**20)  # M_TRIM_THRESHOLD: keep up to 256 MiB of freed heap
