"""Wall time and peak memory of ``cvkit.evaluate`` as the data set and the number of jobs grow.

Synthetic demo images at 28 px, ResNet-18 baseline, default concurrency. Time should grow
linearly with (images x jobs) and memory should stay flat: jobs hold their own fold only, the
store gets one transaction per job, and nothing accumulates in the parent.

    python benchmarks/scaling.py [--epochs 2] [--sizes 200,780,5000] [--repeats 1,2,4]
"""

import argparse
import sys
import tempfile

from _measure import run_measured


def one(n: int, repeats: int, epochs: int, out: str):
    import cvkit
    from cvkit.data import make_demo

    cvkit.evaluate([], data=make_demo(n, image_size=28), folds=5, repeats=repeats, epochs=epochs, out=out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--sizes", default="200,780,5000")
    parser.add_argument("--repeats", default="1,2,4")
    parser.add_argument("--one", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        n, repeats, epochs, out = args.one
        one(int(n), int(repeats), int(epochs), out)
        return

    def measured(n, repeats):
        with tempfile.TemporaryDirectory() as tmp:
            wall, mib = run_measured(
                [sys.executable, __file__, "--one", str(n), str(repeats), str(args.epochs), f"{tmp}/run"]
            )
        jobs = 5 * repeats
        image_epochs = jobs * n * 0.8 * 0.9 * args.epochs  # training images seen over all jobs
        print(
            f"  {n:>6} images {jobs:>4} jobs: {wall:7.1f} s, {1000 * wall / image_epochs:6.2f} ms per "
            f"training image-epoch, peak {mib:6.0f} MiB",
            flush=True,
        )

    print(f"data set size (5 folds x 1 repeat, {args.epochs} epochs):")
    for n in map(int, args.sizes.split(",")):
        measured(n, 1)
    print(f"number of jobs (780 images, 5 folds, {args.epochs} epochs):")
    for repeats in map(int, args.repeats.split(",")):
        measured(780, repeats)


if __name__ == "__main__":
    main()
