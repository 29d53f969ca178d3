"""What bf16 changes in results: one seeded proxy arm, fp32 vs bf16.

    python benchmarks/bench_bf16_proxy.py [--train-images 25000]
        [--epochs 6] [--seed 0] [--quick] [--json out.json]

The ``cpu`` profile turns on bf16 autocast + channels_last where the CPU
has bfloat16 instructions (speed.cpu_has_native_bf16). This trains the
same ``alexnet_cifar`` arm (``experiments.proxy_run``: same seed, same
initial weights, same batches) twice, in float32 and with bf16 +
channels_last, and reports the test and training errors, the gap, the
loss curve and images/s of both. The two runs are not bitwise equal:
the question is whether the difference is small against the seed-to-
seed spread the chapters report (about 0.4-0.8 points of test error).
``--quick`` uses the shipped CIFAR-10 sample (a test of the script).
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_alexnet_cpu import available_cores, write_record  # noqa: E402

from alexnet_lib.config import SpeedConfig  # noqa: E402
from alexnet_lib.data import load_cifar10  # noqa: E402
from alexnet_lib.data.transforms import compute_mean_image  # noqa: E402
from alexnet_lib.experiments import ProxyPlan, proxy_run  # noqa: E402
from alexnet_lib.models import create_model  # noqa: E402
from alexnet_lib.speed import apply_speed, cpu_has_native_bf16  # noqa
from alexnet_lib.sysinfo import environment  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-images", type=int, default=25_000)
    p.add_argument("--test-images", type=int, default=None,
                   help="default: the whole test set")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=available_cores())
    p.add_argument("--quick", action="store_true",
                   help="the shipped sample, 1 epoch (a test)")
    p.add_argument("--json", type=Path, help="write the record here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from alexnet_lib.speed import keep_freed_memory
    keep_freed_memory()  # as training does; ALEXNET_MALLOC=default: off
    profile = "ci" if args.quick else "cpu"
    train = load_cifar10(split="train", profile=profile,
                         subset=None if args.quick else args.train_images)
    test = load_cifar10(split="test", profile=profile,
                        subset=args.test_images)
    mean = compute_mean_image(train.images)
    plan = (ProxyPlan(epochs=1, low_lr_epochs=0, train_eval_images=500)
            if args.quick else ProxyPlan(epochs=args.epochs,
                                         low_lr_epochs=2))
    arms = {"float32": SpeedConfig(),
            "bf16 + channels_last": SpeedConfig(bf16=True,
                                                channels_last=True)}
    runs = {}
    for name, opts in arms.items():
        start = time.perf_counter()
        runs[name] = proxy_run(
            lambda opts=opts: apply_speed(create_model("alexnet_cifar"),
                                          opts, "cpu"),
            train, test, plan, args.seed, mean, "cpu", name=name)
        runs[name]["wall_s"] = round(time.perf_counter() - start, 1)
    a, b = runs["float32"], runs["bf16 + channels_last"]
    diff = {k: round(b[k] - a[k], 4) for k in ("test_error", "train_error",
                                               "gap")}
    rate = [sum(c["images_per_s"] for c in r["curve"]) / len(r["curve"])
            for r in (a, b)]
    print(f"bf16 + channels_last minus float32, seed {args.seed}: test "
          f"error {100 * diff['test_error']:+.2f} points, training error "
          f"{100 * diff['train_error']:+.2f}, gap {100 * diff['gap']:+.2f};"
          f" training {rate[0]:.0f} -> {rate[1]:.0f} images/s")
    report = {"benchmark": "bf16_proxy", "quick": args.quick,
              "date": datetime.datetime.now(datetime.timezone.utc)
              .isoformat(timespec="seconds"),
              "threads": args.threads,
              "cpu_bf16_instructions": cpu_has_native_bf16(),
              "train_images": len(train), "test_images": len(test),
              "plan": vars(plan), "seed": args.seed,
              "bf16_minus_float32": diff,
              "mean_images_per_s": dict(zip(arms, rate)),
              "runs": runs, "environment": environment()}
    write_record(args.json, report)
    return report


if __name__ == "__main__":
    main()
