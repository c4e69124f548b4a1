"""Every job starts from the same process state, whatever ran before it in the same process.

Several jobs share a process (``--jobs 1`` trains them all in the driver; a worker trains many),
and torch keeps settings process-wide that change what a model computes: the default dtype, the
intra-op thread count, the global random generators, the deterministic-algorithm and backend
flags, grad mode. A plugin that changes one of them would change every later job's predictions
under an unchanged key, or make it fail and be blamed. So before each job cvkit sets them all to
the values below, and after it checks the ones a job should leave as it found them.

A plugin that changed one is named in a warning, and the setting is restored: the plugin's own
predictions stay reproducible (each of its jobs starts from the same state and makes the same
change), while failing it would reject plugins that change a setting on purpose (float64
numerics, say) without making any result more right.
"""

from __future__ import annotations

import contextlib
import random
import warnings

import numpy as np
import torch

# Settings a job must leave as it found them, with how to read and set each. cuDNN runs
# deterministic and unbenchmarked because cvkit's trainer asks for that on a GPU anyway.
_SETTINGS = {
    "default dtype": (torch.get_default_dtype, torch.set_default_dtype),
    "grad mode": (torch.is_grad_enabled, torch.set_grad_enabled),
    "deterministic algorithms": (
        lambda: (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        ),
        lambda value: torch.use_deterministic_algorithms(value[0], warn_only=value[1]),
    ),
    "float32 matmul precision": (torch.get_float32_matmul_precision, torch.set_float32_matmul_precision),
    "cudnn.deterministic": (
        lambda: torch.backends.cudnn.deterministic,
        lambda value: setattr(torch.backends.cudnn, "deterministic", value),
    ),
    "cudnn.benchmark": (
        lambda: torch.backends.cudnn.benchmark,
        lambda value: setattr(torch.backends.cudnn, "benchmark", value),
    ),
    "cudnn.allow_tf32": (
        lambda: torch.backends.cudnn.allow_tf32,
        lambda value: setattr(torch.backends.cudnn, "allow_tf32", value),
    ),
    "cudnn.enabled": (
        lambda: torch.backends.cudnn.enabled,
        lambda value: setattr(torch.backends.cudnn, "enabled", value),
    ),
    "mkldnn.enabled": (
        lambda: torch.backends.mkldnn.enabled,
        lambda value: setattr(torch.backends.mkldnn, "enabled", value),
    ),
    "anomaly detection": (torch.is_anomaly_enabled, torch.set_anomaly_enabled),
}

# What every job starts from: torch's defaults, with cuDNN as cvkit's trainer sets it.
_START = {
    "default dtype": torch.float32,
    "grad mode": True,
    "deterministic algorithms": (False, False),
    "float32 matmul precision": "highest",
    "cudnn.deterministic": True,
    "cudnn.benchmark": False,
    "cudnn.allow_tf32": True,
    "cudnn.enabled": True,
    "mkldnn.enabled": True,
    "anomaly detection": False,
}


def reset_process_state(threads: int, seed: int | None = None) -> None:
    """Put the settings every job starts from in place, ``threads`` intra-op threads, and when
    ``seed`` is given, the global generators (Python's, NumPy's, torch's) seeded with it."""
    for name, (_, write) in _SETTINGS.items():
        write(_START[name])
    torch.set_num_threads(threads)
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)


def changed_process_state(reference: dict, threads: int) -> list[str]:
    """The settings that differ from ``reference`` and ``threads``: ``name then -> now`` each."""
    changed = [
        f"{name} {reference[name]} -> {value}"
        for name, value in _read_settings().items()
        if value != reference[name]
    ]
    if torch.get_num_threads() != threads:
        changed.append(f"threads {threads} -> {torch.get_num_threads()}")
    return changed


@contextlib.contextmanager
def job_process_state(origin: str, threads: int, seed: int):
    """Run a job of the plugin at ``origin`` from the common start (see the module docstring);
    afterwards, name the plugin in a warning for any setting it left changed, and restore it."""
    reset_process_state(threads, seed)
    try:
        yield
    finally:
        changed = changed_process_state(_START, threads)
        reset_process_state(threads)
        if changed:
            warnings.warn(_blame(origin, "a job", changed), stacklevel=3)


@contextlib.contextmanager
def import_process_state(origin: str):
    """Import a plugin; if the import changed a process setting, name the plugin and restore it
    (jobs are reset anyway: this says who did it, and keeps the rest of the run in the defaults)."""
    threads = torch.get_num_threads()
    before = _read_settings()
    try:
        yield
    finally:
        changed = changed_process_state(before, threads)
        for name, (_, write) in _SETTINGS.items():
            write(before[name])
        torch.set_num_threads(threads)
    if changed:
        warnings.warn(_blame(origin, "importing it", changed), stacklevel=3)


def _read_settings() -> dict:
    return {name: read() for name, (read, _) in _SETTINGS.items()}


def _blame(origin: str, when: str, changed: list[str]) -> str:
    return (
        f"{origin}: {when} changed torch's process-wide settings ({'; '.join(changed)}); cvkit restored "
        "them so that other jobs and models are unaffected. Change them only inside the plugin's own "
        "code and put them back (try/finally), or not at all"
    )
