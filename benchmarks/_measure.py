"""Wall time and peak memory of a command and all its child processes (worker processes included).

Memory is the sum of the processes' proportional set sizes (PSS, from /proc/PID/smaps_rollup):
pages shared between the workers (torch's libraries) count once, not once per process, so the
sum is the machine's memory actually in use. Sampled every second (reading smaps costs CPU time).
"""

import argparse
import os
import subprocess
import threading
import time
from pathlib import Path

BREASTMNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist.npz"


def add_design_options(parser: argparse.ArgumentParser) -> None:
    """The data and design options the cvkit benchmarks share (default: BreastMNIST, 5x3, 5 epochs)."""
    parser.add_argument("--data", default=str(BREASTMNIST))
    parser.add_argument("--folds", default="5")
    parser.add_argument("--repeats", default="3")
    parser.add_argument("--epochs", default="5")


def design_arguments(args) -> list[str]:
    """Those options as ``cvkit evaluate`` arguments."""
    return ["--data", args.data, "--folds", args.folds, "--repeats", args.repeats, "--epochs", args.epochs]


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def tree_pss_bytes(pid: int) -> int:
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
        stack += _children(current)
    return total


def run_measured(command, cwd=None, env=None, memory=True) -> tuple[float, float]:
    """Run ``command``; return (wall seconds, peak memory of its process tree in MiB, or 0 when
    ``memory`` is false)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}
    )
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while memory and not done.is_set():
            peak = max(peak, tree_pss_bytes(process.pid))
            done.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode:
        raise RuntimeError(
            f"{' '.join(map(str, command))} failed ({process.returncode}):\n{stderr.decode()[-2000:]}"
        )
    return wall, peak / 2**20
