"""float32 training on a CPU: NCHW against channels_last, model by model.

    python benchmarks/bench_channels_last.py [--threads N] [--quick]
        [--json out.json]

The ``cpu`` profile turns channels_last on for float32 training on
x86-64 CPUs (and with bf16 where the CPU has bfloat16 instructions).
This times one SGD step of each network in both layouts, the two taking
turns (``bench_alexnet_cpu.time_steps``), and checks that channels_last
keeps the logits and loss within ``speed.TOLERANCES`` of NCHW
(``speed.check_option``). The record names the instruction set that ran
(PyTorch's CPU capability, oneDNN's limit if one is set): to see a CPU
without AVX-512, run it again with ``ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2``. ``--quick``: tiny batches (a test).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_alexnet_cpu import (  # noqa: E402
    available_cores, time_steps, write_record)
from bench_roofline import build, model_specs, step_fn  # noqa: E402

from alexnet_lib.config import SpeedConfig  # noqa: E402
from alexnet_lib.speed import apply_speed, check_option  # noqa: E402
from alexnet_lib.sysinfo import environment  # noqa: E402


def layout_step(name: str, options: dict, batch: int, channels_last: bool):
    torch.manual_seed(0)  # the same initial weights in both layouts
    model = build(name, options)
    step = step_fn(model, batch, bf16=False)
    apply_speed(model, SpeedConfig(channels_last=channels_last), "cpu")
    return step


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=available_cores())
    p.add_argument("--quick", action="store_true",
                   help="batches of 2-4, 2 steps (a test)")
    p.add_argument("--json", type=Path, help="write the record here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from alexnet_lib.speed import keep_freed_memory
    keep_freed_memory()  # as training does; ALEXNET_MALLOC=default: off
    warmup, steps = (1, 2) if args.quick else (3, 12)
    rows = []
    for group, name, options, batch in model_specs(args.quick):
        fns = [layout_step(name, options, batch, cl) for cl in (False,
                                                                True)]
        nchw, cl = (statistics.median(t)
                    for t in time_steps(fns, warmup, steps))
        model = build(name, options)
        size = model.input_size
        g = torch.Generator().manual_seed(0)
        x = torch.randn(4, 3, size, size, generator=g) * 60
        y = torch.randint(0, 10, (4,), generator=g)
        check = check_option(lambda: build(name, options), x, y,
                             "channels_last")
        row = {"group": group, "model": name, "options": options,
               "batch": batch, "nchw_images_per_s": batch / nchw,
               "channels_last_images_per_s": batch / cl,
               "speedup": nchw / cl, "check": check}
        rows.append(row)
        print(f"{name:<16}{json.dumps(options):<22}NCHW "
              f"{row['nchw_images_per_s']:8.1f}  channels_last "
              f"{row['channels_last_images_per_s']:8.1f} img/s  "
              f"x{row['speedup']:.2f}  within tolerance: {check['ok']}")
    report = {"benchmark": "channels_last_float32", "quick": args.quick,
              "date": datetime.datetime.now(datetime.timezone.utc)
              .isoformat(timespec="seconds"),
              "threads": args.threads, "machine": platform.machine(),
              "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
              "rows": rows, "environment": environment()}
    write_record(args.json, report)
    return report


if __name__ == "__main__":
    main()
