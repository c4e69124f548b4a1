"""cvkit against the hand-written anchor (../shared/bench/naive_cv.py), in alternating pairs.

Both train the same model (ResNet-18 with a 1-channel stem, Adam, the same epochs, batch size,
flip augmentation, checkpoint by validation AUC, no class weights) on the same outer and inner
splits. Prints per pair the wall-time ratio anchor/cvkit, its median, each side's mean AUC and
cvkit's peak resident memory.

    python benchmarks/vs_naive.py [--pairs 3] [--folds 5 --repeats 3 --epochs 5] [--data PATH]
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def timed(command, cwd):
    """Wall seconds and peak resident memory (MiB) of one command, measured by GNU time."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as stats:
        started = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", stats.name, *command], cwd=cwd, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        return wall, int(stats.read().split()[-1]) / 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(SHARED / "data" / "breastmnist.npz"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    common = ["--folds", str(args.folds), "--repeats", str(args.repeats), "--epochs", str(args.epochs),
              "--batch-size", str(args.batch_size), "--data", args.data]
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(args.pairs):
            anchor_json, cvkit_json = Path(tmp, f"anchor{pair}.json"), Path(tmp, f"cvkit{pair}.json")
            anchor_wall, _ = timed([sys.executable, str(SHARED / "bench" / "naive_cv.py"), "--model", "resnet18",
                                    *common, "--device", "cpu", "--out", str(anchor_json)], cwd=tmp)
            cvkit_wall, cvkit_mib = timed([sys.executable, "-m", "cvkit.cli", "evaluate", "--baseline", "resnet18",
                                           *common, "--device", "cpu", "--class-weight", "none", "--select",
                                           "val_auc", "--report", "none", "--out", str(Path(tmp, f"run{pair}")),
                                           "--json", str(cvkit_json)], cwd=ROOT)
            anchor_auc = json.loads(anchor_json.read_text())["auc_mean"]
            cvkit_auc = json.loads(cvkit_json.read_text())["models"]["resnet18"]["mean"]["auc"]
            ratios.append(anchor_wall / cvkit_wall)
            print(f"pair {pair}: anchor {anchor_wall:.1f} s (AUC {anchor_auc:.4f}), cvkit {cvkit_wall:.1f} s "
                  f"(AUC {cvkit_auc:.4f}, peak {cvkit_mib:.0f} MiB): anchor/cvkit = {ratios[-1]:.2f}", flush=True)
    print(f"median anchor/cvkit wall-time ratio over {len(ratios)} pairs: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
