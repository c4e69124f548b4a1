"""A/A calibration on the demo data: the baseline against itself under other training seeds.

For five master seeds, a small design (3 folds x 2 repeats x 2 seeds, few epochs) is run and the
A/A verdict recorded. At most one of the five may claim a difference (better/worse).

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
            aa, t = report.aa, report.aa.ttest
            claims += aa.verdict in ("better", "worse")
            print(
                f"master seed {master}: A/A verdict {aa.verdict:12s} ΔAUC {t.mean:+.4f} "
                f"[{t.low:+.4f}, {t.high:+.4f}] p = {t.pvalue:.3f}; "
                f"Bayes P(equiv) {aa.bayes.p_equivalent:.2f}; "
                f"seed sd {report.noise.seed_sd:.4f}, split sd {report.noise.split_sd:.4f} "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    print(f"{claims} of {args.masters} A/A comparisons claimed a difference")


if __name__ == "__main__":
    main()
