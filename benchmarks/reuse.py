"""A second variant against an already evaluated baseline costs only the variant's jobs.

Runs ``cvkit evaluate plugins/fc_attention.py`` and then ``cvkit evaluate plugins/mlp_head.py``
(another head on the same backbone, so the same cost per job) into one reports folder, and
prints both wall times and their ratio: the second run reuses the baseline's 15 jobs from the
first run's store.

    python benchmarks/reuse.py [--data PATH] [--folds 5 --repeats 3 --epochs 5]
"""
import argparse
import sys
import tempfile
from pathlib import Path

from _measure import add_design_options, design_arguments, run_measured

ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser()
    add_design_options(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as reports:
        walls = []
        for variant in ("plugins/fc_attention.py", "plugins/mlp_head.py"):
            wall, _ = run_measured([sys.executable, "-m", "cvkit.cli", "evaluate", variant, *design_arguments(args),
                                    "--reports-dir", reports, "--report", "none"], cwd=ROOT, memory=False)
            walls.append(wall)
            print(f"{variant}: {wall:.1f} s", flush=True)
    print(f"second comparison / first = {walls[1] / walls[0]:.2f}")


if __name__ == "__main__":
    main()
