"""Wall time of the README's main job (demo data) and of the same comparison on BreastMNIST,
each run fresh and then resumed, plus a determinism check of two fresh runs.

    python benchmarks/foundation.py [--data demo|PATH] [--folds 5 --repeats 3] [--determinism]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import cvkit

ROOT = Path(__file__).resolve().parents[1]


def timed_cli(args, reports):
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "cvkit.cli", "evaluate", *args, "--reports-dir", str(reports)],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def latest_run(reports):
    return cvkit.Results(next(p for p in Path(reports).iterdir() if p.is_dir()))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="demo")
    parser.add_argument("--folds", default="5")
    parser.add_argument("--repeats", default="3")
    parser.add_argument("--determinism", action="store_true", help="also run a second fresh copy and compare")
    args = parser.parse_args()
    command = [
        "plugins/fc_attention.py",
        "--data",
        args.data,
        "--folds",
        args.folds,
        "--repeats",
        args.repeats,
    ]
    with tempfile.TemporaryDirectory() as tmp:
        first, second = Path(tmp, "a"), Path(tmp, "b")
        fresh = timed_cli(command, first)
        resumed = timed_cli(command, first)
        results = latest_run(first)
        print(f"data {args.data}: fresh {fresh:.1f} s, resumed {resumed:.1f} s")
        print(
            results.summary()[
                ["n_jobs", "auc_mean", "auc_std", "accuracy_mean", "balanced_accuracy_mean"]
            ].to_string(float_format="%.4f")
        )
        if args.determinism:
            timed_cli(command, second)
            a = results.predictions.filter(like="prob_").to_numpy()
            b = latest_run(second).predictions.filter(like="prob_").to_numpy()
            print(
                f"two fresh runs: identical probabilities = {np.array_equal(a, b)} "
                f"(max abs difference {np.abs(a - b).max():.3g})"
            )


if __name__ == "__main__":
    main()
