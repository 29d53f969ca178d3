"""CPU training throughput of AlexNet variants, and LRN alone.

    python benchmarks/bench_alexnet_cpu.py [--batch 32] [--steps 5]
        [--warmup 2] [--threads N] [--json out.json]

Rows: the paper's AlexNet (alexnet_lib), the same without LRN,
torchvision's alexnet (the 2014 variant), and LocalResponseNorm vs
torch.nn.LocalResponseNorm on conv1-sized activations (B, 96, 55, 55).
Each row: warm-up steps, then the median of timed steps. A training
step is forward + cross-entropy + backward + SGD (momentum 0.9) update.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from alexnet_lib.layers import LocalResponseNorm
from alexnet_lib.models import AlexNet
from alexnet_lib.sysinfo import environment


def write_record(path: Path | None, report: dict) -> None:
    """The benchmark's record as JSON at ``path`` (None: not written)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset / cgroups
    except AttributeError:
        return os.cpu_count() or 1


def time_steps(step_fns: list, warmup: int, steps: int) -> list[list[float]]:
    """Seconds per call of each function, after ``warmup`` untimed calls.

    The functions take turns (a, b, a, b, ...) so that background load
    on a shared machine falls on all of them alike.
    """
    times = [[] for _ in step_fns]
    for i in range(warmup + steps):
        for fn, t in zip(step_fns, times):
            start = time.perf_counter()
            fn()
            if i >= warmup:
                t.append(time.perf_counter() - start)
    return times


def train_step_fn(model, batch: int, size: int):
    """A closure doing one SGD training step on a fixed random batch."""
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 1000, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def lrn_step_fn(layer, batch: int):
    """Forward + backward of one LRN layer on conv1-sized activations."""
    x = (torch.relu(torch.randn(batch, 96, 55, 55)) * 10).requires_grad_()
    grad = torch.randn(batch, 96, 55, 55)

    def step():
        x.grad = None
        layer(x).backward(grad)
    return step


def build_groups(batch: int) -> dict:
    """group -> {row name: function building the step closure}. Rows of
    a group are timed interleaved; groups are built lazily, one at a time
    (three 61M-parameter models at once would need ~2 GB)."""
    import torchvision
    return {
        "AlexNet (paper, alexnet_lib)": {
            "AlexNet (paper, alexnet_lib)":
                lambda: train_step_fn(AlexNet(), batch, 224)},
        "AlexNet without LRN (alexnet_lib)": {
            "AlexNet without LRN (alexnet_lib)":
                lambda: train_step_fn(AlexNet(lrn=False), batch, 224)},
        "torchvision alexnet (2014 variant)": {
            "torchvision alexnet (2014 variant)":
                lambda: train_step_fn(torchvision.models.alexnet(), batch,
                                      224)},
        "LRN fwd+bwd (B, 96, 55, 55)": {  # the same function, twice
            "LRN fwd+bwd: alexnet_lib LocalResponseNorm":
                lambda: lrn_step_fn(LocalResponseNorm(), batch),
            "LRN fwd+bwd: torch.nn.LocalResponseNorm":
                lambda: lrn_step_fn(
                    torch.nn.LocalResponseNorm(5, 5e-4, 0.75, 2.0), batch)},
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=available_cores(),
                   help="torch threads (default: the cores we may use)")
    p.add_argument("--only", default="",
                   help="run only the groups whose name starts with this "
                        "text, e.g. 'LRN' or 'AlexNet'")
    p.add_argument("--json", type=Path, help="also write results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from alexnet_lib.speed import keep_freed_memory
    keep_freed_memory()  # as training does; ALEXNET_MALLOC=default: off
    torch.manual_seed(0)

    results = []
    print(f"{'benchmark':<44}{'median s/step':>14}{'images/s':>10}")
    for group, rows in build_groups(args.batch).items():
        if not group.startswith(args.only):
            continue
        steps = [build() for build in rows.values()]
        all_times = time_steps(steps, args.warmup, args.steps)
        for name, times in zip(rows, all_times):
            med = statistics.median(times)
            results.append({"name": name, "median_s": med,
                            "images_per_s": args.batch / med,
                            "times_s": times})
            print(f"{name:<44}{med:>14.4f}{args.batch / med:>10.1f}")
        del steps
    report = {"batch": args.batch, "input_size": 224,
              "threads": args.threads, "warmup": args.warmup,
              "steps": args.steps, "environment": environment(),
              "results": results}
    write_record(args.json, report)
    return report


if __name__ == "__main__":
    main()
