"""A second variant against an already evaluated baseline costs only the variant's jobs.

Per pair: ``cvkit evaluate plugins/fc_attention.py`` into a fresh reports folder, then
``cvkit evaluate plugins/mlp_head.py`` (another head on the same backbone, so the same cost per
job) into the same folder, which reuses the baseline's 15 jobs from the first run's store.
Prints both wall times and their ratio per pair, and the median ratio: job times on a shared
machine drift by several percent between minutes, so one pair is a noisy measurement.

    python benchmarks/reuse.py [--pairs 3] [--data PATH] [--folds 5 --repeats 3 --epochs 5]
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from _measure import add_design_options, design_arguments, run_measured

ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser()
    add_design_options(parser)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    ratios = []
    for pair in range(args.pairs):
        with tempfile.TemporaryDirectory() as reports:
            walls = []
            for variant in ("plugins/fc_attention.py", "plugins/mlp_head.py"):
                wall, _ = run_measured(
                    [
                        sys.executable,
                        "-m",
                        "cvkit.cli",
                        "evaluate",
                        variant,
                        *design_arguments(args),
                        "--reports-dir",
                        reports,
                        "--report",
                        "none",
                    ],
                    cwd=ROOT,
                    memory=False,
                )
                walls.append(wall)
        ratios.append(walls[1] / walls[0])
        print(
            f"pair {pair + 1}: first {walls[0]:.1f} s, second {walls[1]:.1f} s, "
            f"second / first = {ratios[-1]:.3f}",
            flush=True,
        )
    print(f"median second / first over {len(ratios)} pair(s) = {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
