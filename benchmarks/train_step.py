"""Bare training-step throughput of ResNet-18 (1-channel stem, 2 classes), images per second.

Why cvkit trains the way it does: each configuration runs in its own process (so thread
settings do not leak) and reports the median over chunks of steps.

    anchor           the hand-written loop's step: Adam, all cores, batch 32
    fused            fused Adam (cvkit), all cores
    fused+shortcut   plus the exact shortcuts (cvkit): 1x1-output convolutions as one matrix
                     product (Adam training only the tap a 1x1 map meets), max pooling with
                     the channels-last kernel
    stacked-K        K models trained as one batched model (torch.func vmap of stacked
                     parameters: grouped convolutions), all cores
    side-by-side     cvkit's CPU default: one job per core, one thread each (total of all jobs)
    batch-N          one model at batch N with the shortcuts: what sharing weights across a
                     large batch would give

    python benchmarks/train_step.py [--device cpu|cuda] [--image-size 28] [--steps 40]
"""

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


def resnet18_gray():
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=2)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def measure(config: str, device: str, size: int, steps: int, batch: int, threads: int | None) -> float:
    from cvkit.trainers._kernels import single_tap_parameters, use_exact_shortcuts

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    stacked = int(config.split("-")[1]) if config.startswith("stacked") else 0
    if config.startswith("batch-"):
        batch = int(config.split("-")[1])
    models = [resnet18_gray().to(device) for _ in range(max(stacked, 1))]
    shortcuts = config == "fused+shortcut" or config.startswith("batch-")
    if shortcuts:
        use_exact_shortcuts(models[0])
    if stacked:
        from torch.func import functional_call, stack_module_state, vmap

        params, buffers = stack_module_state(models)
        skeleton = copy.deepcopy(models[0]).to("meta")
        forward = vmap(lambda p, b, x: functional_call(skeleton, (p, b), (x,)))
        optimizer = torch.optim.Adam(list(params.values()), lr=1e-3, fused=True)
        x = torch.randn(stacked, batch, 1, size, size, device=device)
        y = torch.randint(0, 2, (stacked * batch,), device=device)

        def step():
            optimizer.zero_grad()
            logits = forward(params, buffers, x).reshape(stacked * batch, 2)
            F.cross_entropy(logits, y, reduction="none").view(stacked, batch).mean(1).sum().backward()
            optimizer.step()
    else:
        model = models[0]
        x = torch.randn(batch, 1, size, size, device=device)
        params = single_tap_parameters(model, lambda: model(x)) if shortcuts else model.parameters()
        optimizer = torch.optim.Adam(params, lr=1e-3, fused=None if config == "anchor" else True)
        y = torch.randint(0, 2, (batch,), device=device)

        def step():
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()

    for _ in range(3):
        step()
    chunks = []
    for _ in range(max(steps // 5, 3)):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(5):
            step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        chunks.append(5 * batch * max(stacked, 1) / (time.perf_counter() - started))
    return statistics.median(chunks)


def in_subprocess(config, args, threads=None, copies=1) -> float:
    command = [
        sys.executable,
        __file__,
        "--one",
        config,
        "--device",
        args.device,
        "--image-size",
        str(args.image_size),
        "--steps",
        str(args.steps),
    ] + (["--threads", str(threads)] if threads else [])
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    return sum(json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in processes)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.device, args.image_size, args.steps, 32, args.threads)))
        return
    cores = len(os.sched_getaffinity(0))
    anchor = in_subprocess("anchor", args)
    rows = [("anchor", anchor)]
    for config in ("fused", "fused+shortcut", "stacked-2", "stacked-5"):
        rows.append((config, in_subprocess(config, args)))
    if args.device == "cpu":
        rows.append(
            (f"side-by-side x{cores}", in_subprocess("fused+shortcut", args, threads=1, copies=cores))
        )
    rows += [(f"batch-{n}", in_subprocess(f"batch-{n}", args)) for n in (160, 320)]
    print(f"ResNet-18, {args.image_size} px, batch 32 per model, {args.device}, {cores} cores")
    for name, rate in rows:
        print(f"  {name:<20} {rate:8.0f} images/s   x{rate / anchor:.2f} of the anchor step")


if __name__ == "__main__":
    main()
