"""A head-only variant on a frozen backbone trains in seconds: its features are computed once.

Saves a ResNet-18 checkpoint (standing in for pretrained weights, which this machine cannot
download), runs ``cvkit evaluate plugins/frozen_probe.py --weights CHECKPOINT`` on BreastMNIST
and prints the training time per job of the fine-tuned baseline and of the frozen-backbone
probe, whose first job extracts and caches the features that every later job reuses.

    python benchmarks/frozen.py [--data PATH] [--folds 5 --repeats 3 --epochs 5]
"""

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from _measure import add_design_options, design_arguments, run_measured

import cvkit

ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser()
    add_design_options(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp, "resnet18.pt")
        torch.manual_seed(0)
        torch.save(cvkit.trainers.resnet("resnet18", in_channels=1, n_classes=2).state_dict(), checkpoint)
        wall, _ = run_measured(
            [
                sys.executable,
                "-m",
                "cvkit.cli",
                "evaluate",
                "plugins/frozen_probe.py",
                *design_arguments(args),
                "--weights",
                str(checkpoint),
                "--report",
                "none",
                "--out",
                str(Path(tmp, "run")),
            ],
            cwd=ROOT,
            memory=False,
        )
        results = cvkit.Results(Path(tmp, "run"))
        print(f"whole run: {wall:.1f} s wall")
        for model in ("resnet18", "frozen_probe"):
            durations = sorted(job["duration_s"] for job in results.jobs if job["model"] == model)
            print(
                f"{model:>13}: {len(durations)} jobs, {sum(durations):6.1f} s of training in all, "
                f"median {durations[len(durations) // 2]:.2f} s, longest {durations[-1]:.2f} s"
            )


if __name__ == "__main__":
    main()
