"""Determinism check: train stored jobs again and compare their predictions with the store's."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ._executor import InProcessExecutor
from ._jobs import Job, environment
from ._store import VALIDATION_RULE

# Absolute difference per probability accepted on a GPU: cuDNN is deterministic here, but the
# kernels it picks, and so the last bits, may change between driver and library versions.
GPU_TOLERANCE = 1e-4


@dataclass
class JobCheck:
    """One job trained again: how far its predictions are from the stored ones, and if they
    differ, whether a second training agreed with the first and what to suspect."""

    job: Job
    n_values: int
    n_different: int
    max_difference: float
    reruns_agree: bool | None = None
    suspect: str | None = None

    @property
    def identical(self) -> bool:
        return self.n_different == 0


@dataclass
class Verification:
    checks: list[JobCheck]
    tolerance: float  # 0.0: bit for bit
    n_done: int

    @property
    def ok(self) -> bool:
        return all(check.identical for check in self.checks)


def verify_jobs(jobs: list[Job], store, work, *, n_jobs: int, seed: int = 0) -> Verification:
    """Train ``n_jobs`` of the finished ``jobs`` again (sampled with ``seed``) with ``work`` and
    the thread count in each job's key, and compare every stored prediction (each checkpoint
    rule, each epoch, the hold-out set)."""
    store.check_predictions()  # a damaged row in a job not sampled here is found too
    stored = {row["key"]: row for row in store.jobs() if row["status"] == "done"}
    done = [job for job in jobs if job.key in stored]
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(done), size=min(n_jobs, len(done)), replace=False)) if done else []
    device = work.context.device
    tolerance = GPU_TOLERANCE if device.startswith("cuda") else 0.0
    checks = []
    for index in chosen:
        job = done[index]
        recorded = json.loads(stored[job.key]["environment"] or "{}")
        threads = job.threads  # the key's: a job reused from a run with other threads must not pass
        expected = store.job_predictions(job.key)
        first = _train(work, job, threads, expected)
        n_values, n_different, max_difference = _difference(expected, first, tolerance)
        check = JobCheck(job, n_values, n_different, max_difference)
        if n_different:
            second = _train(work, job, threads, expected)
            check.reruns_agree = _difference(first, second, 0.0)[1] == 0
            check.suspect = _suspect(check.reruns_agree, recorded, environment(device) | {"threads": threads})
        checks.append(check)
    return Verification(checks, tolerance, len(done))


def _train(work, job, threads, expected) -> dict[str, dict[int, np.ndarray]]:
    ((_, result, error),) = InProcessExecutor(threads).map(work, [job])
    if error is not None:
        raise error
    out = {
        rule: dict(zip(result.test_indices.tolist(), probs)) for rule, probs in result.probs_by_rule.items()
    }
    if result.holdout_probs is not None:
        out["holdout"] = dict(zip(result.holdout_indices.tolist(), result.holdout_probs))
    if result.val_probs is not None and VALIDATION_RULE in expected:  # not in a store made before
        out[VALIDATION_RULE] = dict(zip(result.val_indices.tolist(), result.val_probs))
    return out


def _difference(expected, actual, tolerance) -> tuple[int, int, float]:
    """(values compared, values further apart than ``tolerance``, largest difference); a rule or
    sample present on one side only counts as different, and so does NaN against a number (NaN
    compares false with everything, so a plain ``>`` would pass it)."""
    n_values = n_different = 0
    largest = 0.0
    for rule in expected.keys() | actual.keys():
        a, b = expected.get(rule, {}), actual.get(rule, {})
        for sample in a.keys() | b.keys():
            if sample not in a or sample not in b:
                n_values += 1
                n_different += 1
                largest = float("inf")
                continue
            x, y = np.asarray(a[sample], dtype=float), np.asarray(b[sample], dtype=float)
            same = (x == y) | (np.isnan(x) & np.isnan(y))
            gap = np.where(same, 0.0, np.abs(x - y))
            gap = np.where(np.isnan(gap), np.inf, gap)  # NaN against a number
            n_values += gap.size
            n_different += int((gap > tolerance).sum())
            largest = max(largest, float(gap.max(initial=0.0)))
    return n_values, n_different, largest


def _suspect(reruns_agree: bool, recorded: dict, current: dict) -> str:
    if not reruns_agree:
        return (
            "two trainings here differ from each other: the job is not deterministic; suspect randomness "
            "drawn without the job's seed (Python's random, NumPy's global generator, time, os.urandom) "
            "or nondeterministic GPU kernels (torch.use_deterministic_algorithms(True) names them)"
        )
    changed = [
        f"{key} {recorded.get(key)} -> {current.get(key)}"
        for key in sorted(recorded.keys() | current.keys())
        if recorded.get(key) != current.get(key)
    ]
    if changed:
        return (
            "this machine repeats its own result but not the stored one, and the environment differs from "
            f"the one that trained it: {', '.join(changed)}"
        )
    return (
        "this machine repeats its own result but not the stored one, with the same recorded software: "
        "suspect another CPU or GPU model (math libraries pick kernels by instruction set), a library "
        "cvkit does not record (MKL, oneDNN, cuDNN), or an edited store"
    )
