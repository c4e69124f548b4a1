"""The seed-noise (A/A) check on the demo data: the baseline's even seeds against its odd ones.

For five master seeds, a small design (3 folds x 2 repeats x 2 seeds, few epochs) is run and the
check recorded. It says "differs" in alpha (5%) of runs when seeds are exchangeable: at most one
of five is expected (its calibration over hundreds of data sets is benchmarks/calibration.py's).

    python benchmarks/aa_demo.py [--epochs 3] [--masters 5]
"""

import argparse
import tempfile
import time

import cvkit


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--masters", type=int, default=5)
    args = parser.parse_args()
    claims = 0
    with tempfile.TemporaryDirectory() as tmp:
        for master in range(args.masters):
            started = time.perf_counter()
            results = cvkit.evaluate(
                [], data="demo", folds=3, repeats=2, seeds=2, seed=master, epochs=args.epochs, reports_dir=tmp
            )
            report = cvkit.compare(results)
            aa = report.aa
            claims += aa.differs
            outcome = "differs" if aa.differs else "no difference"
            print(
                f"master seed {master}: {outcome:13s} ΔAUC {aa.estimate:+.4f} [{aa.ci_low:+.4f}, "
                f"{aa.ci_high:+.4f}] p = {aa.p:.3f}; power at one seed sd {aa.power_one_sd:.0%}; "
                f"seed sd {report.noise.seed_sd:.4f}, split sd {report.noise.split_sd:.4f} "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    print(f"{claims} of {args.masters} seed-noise checks found a difference")


if __name__ == "__main__":
    main()
