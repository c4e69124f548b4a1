"""cvkit against the hand-written anchor (../shared/bench/naive_cv.py), in alternating pairs.

One comparison: the baseline (ResNet-18 with a 1-channel stem) and one variant (the attention fc
head), 5 folds x 3 repeats. The anchor trains them in two runs of its loop; cvkit in one
``cvkit evaluate plugins/fc_attention.py``. Both use the same models, Adam, epochs, batch size,
flip augmentation, checkpoint by validation AUC, no class weights, and the same outer and inner
splits. Per pair: the wall-time ratio anchor/cvkit, its median over pairs, each side's mean AUC
per model; then cvkit's peak memory (all its processes; PSS) in one more run, untimed, because
sampling the memory maps costs CPU time that the anchor's runs would not pay.

    python benchmarks/vs_naive.py [--pairs 3] [--folds 5 --repeats 3 --epochs 5] [--data PATH] [--device cpu]
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from _measure import BREASTMNIST, run_measured

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODELS = ("resnet18", "fc_attention")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(BREASTMNIST))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cvkit-args", default="", help="extra cvkit evaluate options, e.g. '--jobs 4'")
    args = parser.parse_args()
    common = [
        "--folds",
        str(args.folds),
        "--repeats",
        str(args.repeats),
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch_size),
        "--data",
        args.data,
        "--device",
        args.device,
    ]
    resize = ["--image-size", str(args.image_size)] if args.image_size != 28 else []

    def cvkit(folder, memory):
        summary = Path(folder, "summary.json")
        wall, mib = run_measured(
            [
                sys.executable,
                "-m",
                "cvkit.cli",
                "evaluate",
                "plugins/fc_attention.py",
                *common,
                *resize,
                "--class-weight",
                "none",
                "--select",
                "val_auc",
                "--report",
                "none",
                # a folder of its own: no sibling run to reuse jobs from
                "--out",
                str(Path(folder, "run")),
                "--json",
                str(summary),
                *args.cvkit_args.split(),
            ],
            cwd=ROOT,
            memory=memory,
        )
        return wall, mib, json.loads(summary.read_text())["models"]

    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(args.pairs):
            anchor_wall, anchor_auc = 0.0, {}
            for model in MODELS:
                out = Path(tmp, f"anchor-{model}-{pair}.json")
                wall, _ = run_measured(
                    [
                        sys.executable,
                        str(SHARED / "bench" / "naive_cv.py"),
                        "--model",
                        model,
                        *common,
                        *resize,
                        "--out",
                        str(out),
                    ],
                    cwd=tmp,
                    memory=False,
                )
                anchor_wall += wall
                anchor_auc[model] = json.loads(out.read_text())["auc_mean"]
            cvkit_wall, _, models = cvkit(Path(tmp, f"pair{pair}"), memory=False)
            ratios.append(anchor_wall / cvkit_wall)
            aucs = ", ".join(
                f"{m} anchor {anchor_auc[m]:.4f} / cvkit {models[m]['mean']['auc']:.4f}" for m in MODELS
            )
            print(
                f"pair {pair}: anchor {anchor_wall:.1f} s, cvkit {cvkit_wall:.1f} s: "
                f"anchor/cvkit = {ratios[-1]:.2f}; mean AUC {aucs}",
                flush=True,
            )
        # Reading the processes' memory maps costs CPU time the anchor's runs do not pay, so
        # memory is measured in a run of its own, outside the timed pairs.
        wall, peak, _ = cvkit(Path(tmp, "memory"), memory=True)
        print(
            f"peak memory of cvkit (all its processes, PSS; a separate run of {wall:.1f} s): {peak:.0f} MiB"
        )
    print(f"median anchor/cvkit wall-time ratio over {len(ratios)} pairs: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
