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

from _measure import run_measured

ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "breastmnist.npz"))
    parser.add_argument("--folds", default="5")
    parser.add_argument("--repeats", default="3")
    parser.add_argument("--epochs", default="5")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as reports:
        walls = []
        for variant in ("plugins/fc_attention.py", "plugins/mlp_head.py"):
            wall, _ = run_measured([sys.executable, "-m", "cvkit.cli", "evaluate", variant, "--data", args.data,
                                    "--folds", args.folds, "--repeats", args.repeats, "--epochs", args.epochs,
                                    "--reports-dir", reports, "--report", "none"], cwd=ROOT)
            walls.append(wall)
            print(f"{variant}: {wall:.1f} s", flush=True)
    print(f"second comparison / first = {walls[1] / walls[0]:.2f}")


if __name__ == "__main__":
    main()
