"""Time the full statistical analysis of a run: two models x 5 folds x 3 repeats on 780 samples
(BreastMNIST's size) with 10,000 bootstrap resamples. Target: under 2 s.

The run store is synthesised (no training): probabilities for every job, selection rule and
epoch, written through the same Store API that cvkit evaluate uses.

    python benchmarks/stats_speed.py [--samples 780] [--epochs 5] [--resamples 10000]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import cvkit
from cvkit import stats
from cvkit.runner import Job, JobResult, Store, job_seed
from cvkit.splits import make_plan

RULES = ("val_auc", "val_loss", "val_acc", "last")


def synthesise_run(run_dir: Path, n_samples: int, epochs: int) -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(n_samples) < 0.73).astype(int)  # 0 = malignant, as in BreastMNIST
    plan = make_plan(labels, 5, 3, seed=0)
    with Store(run_dir, create=True) as store:
        store.set_meta(
            "run",
            dict(
                cvkit_version=cvkit.__version__,
                command="synthetic",
                device="cpu",
                config=dict(epochs=epochs, batch_size=32, lr=1e-3, select="val_auc"),
                design=dict(folds=5, repeats=3, seeds=1, seed=0, val_fraction=0.1),
                data=dict(
                    name="synthetic",
                    n_samples=n_samples,
                    class_names=["malignant", "normal/benign"],
                    positive=0,
                    class_counts={
                        "malignant": int((labels == 0).sum()),
                        "normal/benign": int((labels == 1).sum()),
                    },
                ),
            ),
        )
        store.set_meta("plan", plan.to_records())
        store.write_samples([f"s{i}" for i in range(n_samples)], labels, None)
        for role, name, skill in (("baseline", "resnet18", 1.6), ("variant", "fc_attention", 1.7)):
            store.write_model(name, role, name, name, {})
            for split in plan:
                y = labels[split.test]
                probs = {}
                for rule in (*RULES, *(f"epoch:{e}" for e in range(1, epochs + 1))):
                    p_malignant = 1 / (1 + np.exp(-(skill * (y == 0) - 0.8 + rng.normal(0, 1, len(y)))))
                    probs[rule] = np.column_stack([p_malignant, 1 - p_malignant])
                job = Job(
                    name,
                    None,
                    split.repeat,
                    split.fold,
                    0,
                    job_seed(0, split.repeat, split.fold, 0),
                    f"{name}-{split.repeat}-{split.fold}",
                )
                store.write_result(
                    JobResult(job, probs, split.test, "val_auc", epochs, [], 1.0, {}, [1.0, 1.0])
                )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=780)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--resamples", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions; the median is reported")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        synthesise_run(run_dir, args.samples, args.epochs)
        timings = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            results = cvkit.Results(run_dir)
            loaded = time.perf_counter()
            report = cvkit.compare(results, n_resamples=args.resamples)
            timings.append((loaded - started, time.perf_counter() - loaded))
        load, analysis = np.median(np.array(timings), axis=0)
        c = report.comparisons[0]
        positive = results.labels == 0
        table = results.predictions.pivot_table(
            index=["model", "repeat"], columns="sample_idx", values="prob_malignant"
        )
        started = time.perf_counter()
        stats.bootstrap_diff(
            positive,
            table.loc["resnet18"].to_numpy(),
            table.loc["fc_attention"].to_numpy(),
            n_resamples=args.resamples,
        )
        bootstrap = time.perf_counter() - started
    print(
        f"{args.samples} samples, 2 models x 15 folds, {args.resamples} bootstrap resamples, "
        f"{len(report.selection)} selection rules"
    )
    print(
        f"load results {load:.2f} s + compare {analysis:.2f} s = {load + analysis:.2f} s "
        f"(median of {args.repeat}); bootstrap alone {bootstrap:.2f} s"
    )
    print(f"verdict {c.verdict}: {c.paragraph}")


if __name__ == "__main__":
    main()
