"""Where a CIFAR proxy's training step spends its time, by layer kind.

    python benchmarks/bench_proxy_profile.py [--model alexnet_cifar]
        [--steps 60] [--warmup 5] [--repeats 3] [--threads N] [--quick]
        [--json out.json]

Runs the proxy training path as the chapters run it (``CifarLoader``
with the ``ProxyPlan`` defaults feeding ``train.train_step``) under
``torch.profiler`` for ``--steps`` steps, in float32 and, where the CPU
has bfloat16 instructions, with bf16 autocast + channels_last (what the
``cpu`` profile then turns on). Each top-level event of a step is put in
one row: the data path, the forward and backward of each layer kind
(convolution, LRN + max-pooling, ReLU, dropout, fully connected), the
loss and the step's statistics, the optimizer; what no event covers
(Python between the calls) is "unattributed". The same steps without the
profiler give the rate the profiler slows down. Each measurement is
repeated (``--repeats``) and the median kept, against machine noise.
``--quick`` uses the shipped CIFAR-10 sample and 2 steps (a test).
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_alexnet_cpu import available_cores, write_record  # noqa: E402

from alexnet_lib.config import SpeedConfig  # noqa: E402
from alexnet_lib.data import CifarLoader, load_cifar10  # noqa: E402
from alexnet_lib.data.transforms import compute_mean_image  # noqa: E402
from alexnet_lib.experiments import ProxyPlan  # noqa: E402
from alexnet_lib.models import create_model  # noqa: E402
from alexnet_lib.optim import OptimConfig, build_optimizer  # noqa: E402
from alexnet_lib.speed import apply_speed, cpu_has_native_bf16  # noqa
from alexnet_lib.sysinfo import environment  # noqa: E402
from alexnet_lib.train import train_step  # noqa: E402

KINDS = ("convolution", "LRN + max-pooling", "ReLU", "dropout",
         "fully connected")
# (kind, forward event names, backward function names)
_KIND_NAMES = {
    "convolution": ({"aten::conv2d"}, {"ConvolutionBackward0"}),
    "LRN + max-pooling": ({"_LRNMaxPoolC", "_LocalResponseNormC",
                           "_LocalResponseNormCPU", "aten::max_pool2d"},
                          {"_LRNMaxPoolCBackward",
                           "_LocalResponseNormCBackward",
                           "_LocalResponseNormCPUBackward",
                           "MaxPool2DWithIndicesBackward0"}),
    "ReLU": ({"aten::relu", "aten::relu_"}, {"ReluBackward0"}),
    "dropout": ({"aten::dropout", "aten::native_dropout"},
                {"MulBackward0", "NativeDropoutBackward0"}),
    "fully connected": ({"aten::linear"},
                        {"AddmmBackward0", "MmBackward0", "TBackward0"}),
}
_BACKWARD = "autograd::engine::evaluate_function: "


class _Forward(nn.Module):
    """The model, its forward labelled for the profiler."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        with record_function("forward"):
            return self.model(x)


def _labelled_batches(loader):
    """The loader's batches, epoch after epoch, each fetch labelled."""
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        it = iter(loader)
        while True:
            with record_function("data"):
                batch = next(it, None)
            if batch is None:
                break
            yield batch
        epoch += 1


def classify(events) -> dict[str, float]:
    """Microseconds per row from the profile's top-level events."""
    rows: dict[str, float] = defaultdict(float)
    for e in events:
        if e.cpu_parent is not None:
            continue
        if e.name == "data":
            rows["data path (CifarLoader)"] += e.cpu_time_total
        elif e.name == "forward":
            inner = {c.name: 0.0 for c in e.cpu_children}
            for c in e.cpu_children:
                inner[c.name] += c.cpu_time_total
            for name, us in inner.items():
                kind = next((k for k, (fw, _) in _KIND_NAMES.items()
                             if name in fw), "other")
                rows[f"forward: {kind}"] += us
            rows["forward: other"] += e.cpu_time_total - sum(inner.values())
        elif e.name.startswith(_BACKWARD):
            name = e.name[len(_BACKWARD):]
            kind = next((k for k, (_, bw) in _KIND_NAMES.items()
                         if name in bw), "other")
            rows[f"backward: {kind}"] += e.cpu_time_total
        elif e.name.startswith("Optimizer."):
            rows["optimizer (step, zero_grad)"] += e.cpu_time_total
        else:
            rows["loss and step statistics"] += e.cpu_time_total
    return rows


def run(dtype_name: str, opts: SpeedConfig, train, mean, plan: ProxyPlan,
        model_name: str, steps: int, warmup: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = _Forward(apply_speed(create_model(model_name), opts, "cpu"))
    optimizer = build_optimizer(model, OptimConfig(
        lr=plan.lr, momentum=plan.momentum, weight_decay=plan.weight_decay))
    loader = CifarLoader(train.images, train.labels, plan.batch_size,
                         seed=0, crop=plan.crop, flip=plan.flip,
                         random_crop=plan.random_crop, pca_std=plan.pca_std,
                         mean=mean, drop_last=True)
    batches = _labelled_batches(loader)

    def steps_of(n):
        for _ in range(n):
            x, y = next(batches)
            train_step(model, x, y, optimizer, "cpu")

    steps_of(warmup)
    plain, profiled = [], []
    for _ in range(repeats):  # the median of each, against machine noise
        start = time.perf_counter()
        steps_of(steps)
        plain.append(time.perf_counter() - start)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            steps_of(steps)
            seconds = time.perf_counter() - start
        profiled.append((seconds, classify(prof.events()),
                         prof.key_averages()))
    plain_s = statistics.median(plain)
    profiled_s, rows, averages = sorted(
        profiled, key=lambda p: p[0])[len(profiled) // 2]
    step_us = 1e6 * profiled_s / steps
    order = (["data path (CifarLoader)"]
             + [f"{phase}: {kind}" for phase in ("forward", "backward")
                for kind in KINDS + ("other",)]
             + ["loss and step statistics", "optimizer (step, zero_grad)"])
    table = {name: round(rows.get(name, 0.0) / steps / 1e3, 3)
             for name in order}
    table["unattributed (Python between calls)"] = round(
        (step_us - sum(rows.values()) / steps) / 1e3, 3)
    top = sorted(averages, key=lambda a: -a.self_cpu_time_total)
    return {
        "dtype": dtype_name, "steps": steps, "repeats": repeats,
        "batch": plan.batch_size,
        "images_per_s": round(steps * plan.batch_size / plain_s, 1),
        "images_per_s_profiled": round(steps * plan.batch_size
                                       / profiled_s, 1),
        "step_ms_profiled": round(step_us / 1e3, 3),
        "ms_per_step": table,
        "top_ops_self_ms_per_step": {
            a.key: round(a.self_cpu_time_total / steps / 1e3, 3)
            for a in top[:15]},
    }


def conv_share(run_record: dict) -> float:
    """Convolution's forward + backward as a share of the profiled step."""
    ms = run_record["ms_per_step"]
    return ((ms["forward: convolution"] + ms["backward: convolution"])
            / run_record["step_ms_profiled"])


def format_table(runs: dict) -> str:
    names = []
    for r in runs.values():
        names += [n for n in r["ms_per_step"] if n not in names]
    head = "".join(f" | {d} ms/step | share" for d in runs)
    lines = [f"| row{head} |", "|---" + "|---:" * 2 * len(runs) + "|"]
    for n in names:
        cells = ""
        for r in runs.values():
            ms = r["ms_per_step"].get(n, 0.0)
            cells += f" | {ms:.2f} | {100 * ms / r['step_ms_profiled']:.1f}%"
        lines.append(f"| {n}{cells} |")
    cells = "".join(f" | {r['step_ms_profiled']:.2f} | 100%"
                    for r in runs.values())
    lines.append(f"| whole step (profiled){cells} |")
    lines.append("convolution, forward + backward: " + "; ".join(
        f"{d} {100 * conv_share(r):.1f}% of the step"
        for d, r in runs.items()))
    lines.append("images/s without / with the profiler: " + "; ".join(
        f"{d} {r['images_per_s']:.0f} / {r['images_per_s_profiled']:.0f}"
        for d, r in runs.items()))
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="alexnet_cifar",
                   choices=("alexnet_cifar", "cifar_11pct", "cifar_13pct"))
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3,
                   help="segments of --steps steps, with and without the "
                   "profiler; the median of each is reported")
    p.add_argument("--threads", type=int, default=available_cores())
    p.add_argument("--quick", action="store_true",
                   help="the shipped sample, 2 steps (a test)")
    p.add_argument("--json", type=Path, help="write the record here")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.repeats = 2, 1, 1
    torch.set_num_threads(args.threads)
    from alexnet_lib.speed import keep_freed_memory
    keep_freed_memory()  # as training does; ALEXNET_MALLOC=default: off
    plan = ProxyPlan(batch_size=16 if args.quick else 128)
    train = load_cifar10(split="train",
                         profile="ci" if args.quick else "cpu",
                         subset=None if args.quick else 10_000)
    mean = compute_mean_image(train.images)
    arms = {"float32": SpeedConfig()}
    if cpu_has_native_bf16():
        arms["bf16 + channels_last"] = SpeedConfig(bf16=True,
                                                   channels_last=True)
    runs = {name: run(name, opts, train, mean, plan, args.model,
                      args.steps, args.warmup, args.repeats)
            for name, opts in arms.items()}
    print(format_table(runs))
    report = {"benchmark": "proxy_profile", "quick": args.quick,
              "model": args.model,
              "date": datetime.datetime.now(datetime.timezone.utc)
              .isoformat(timespec="seconds"),
              "threads": args.threads, "plan": vars(plan),
              "cpu_bf16_instructions": cpu_has_native_bf16(),
              "runs": runs, "environment": environment()}
    write_record(args.json, report)
    return report


if __name__ == "__main__":
    main()
