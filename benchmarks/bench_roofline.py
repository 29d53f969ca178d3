"""What the CPU cores can do: peak FLOP/s, and each model's share of it.

    python benchmarks/bench_roofline.py [--threads N] [--quick]
        [--huge-pages] [--json results/benchmarks/roofline_cpu.json]

1. Peak: the best FLOP/s of float32 and bfloat16 matrix products
   (N x N x N) and convolutions (AlexNet's conv2 and conv3 shapes,
   forward), each the fastest of several repeats. The measured peak of
   a dtype is the best of its rows.
2. Models: a training step (forward + cross-entropy + backward + SGD
   update, momentum 0.9) on a fixed random batch, in images/s (median
   of timed steps). FLOPs per image come from ``speed.count_flops``
   (conv, locally connected and linear layers, 3x forward); the
   achieved FLOP/s as a share of the measured peak of the same dtype
   says how close to the machine's limit the model trains. Rows with
   and without LRN take turns, so background load falls on both alike;
   their difference is LRN's share of the step.
   A second measure times LRN inside the step (module hooks around its
   forward and backward): its share of the same step's wall time.
3. LRN alone: forward + backward on conv1- and conv2-sized maps:
   alexnet_lib's compiled C kernel and its blocked PyTorch fallback,
   the plain formula with autograd, and ``torch.nn.LocalResponseNorm``.

bf16 rows run where the CPU has bfloat16 instructions
(``speed.cpu_has_native_bf16``) or with ``--bf16``. ``--huge-pages``
sets ``THP_MEM_ALLOC_ENABLE=1`` before the first large tensor: PyTorch
then backs large tensors with 2 MiB pages, which makes the first touch
of fresh activations cheaper. ``--quick`` runs tiny sizes (for tests).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_alexnet_cpu import (  # noqa: E402
    available_cores, time_steps, write_record)


def best_flops(fn, flops: float, repeats: int) -> float:
    """FLOP/s of the fastest of ``repeats`` calls (after one warm-up)."""
    fn()
    best = min(_timed(fn) for _ in range(repeats))
    return flops / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_rows(dtypes, quick: bool) -> list[dict]:
    import torch
    import torch.nn.functional as F
    n = 256 if quick else 2048
    batch = 2 if quick else 64
    convs = {  # name: (input shape, weight shape, padding, groups)
        "conv2 5x5, 27x27, groups 2": ((batch, 96, 27, 27),
                                       (256, 48, 5, 5), 2, 2),
        "conv3 3x3, 13x13": ((batch, 256, 13, 13), (384, 256, 3, 3), 1, 1),
    }
    rows, repeats = [], 2 if quick else 5
    for dtype in dtypes:
        a = torch.randn(n, n, dtype=dtype)
        b = torch.randn(n, n, dtype=dtype)
        rate = best_flops(lambda: torch.mm(a, b), 2 * n ** 3, repeats)
        rows.append({"op": f"matmul {n}x{n}x{n}", "dtype": str(dtype),
                     "flop_per_s": rate})
        for name, (xs, ws, pad, groups) in convs.items():
            for layout in (torch.contiguous_format, torch.channels_last):
                x = torch.randn(xs, dtype=dtype).contiguous(
                    memory_format=layout)
                w = torch.randn(ws, dtype=dtype).contiguous(
                    memory_format=layout)
                out = F.conv2d(x, w, padding=pad, groups=groups)
                flops = 2 * out.numel() * ws[1] * ws[2] * ws[3]
                rate = best_flops(lambda: F.conv2d(x, w, padding=pad,
                                                   groups=groups),
                                  flops, repeats)
                nhwc = layout == torch.channels_last
                rows.append({"op": f"{name}, batch {batch}, "
                             f"{'NHWC' if nhwc else 'NCHW'}",
                             "dtype": str(dtype), "flop_per_s": rate})
        for r in rows[-5:]:
            print(f"  {r['op']:<46}{r['dtype']:>16}"
                  f"{r['flop_per_s'] / 1e9:>9.1f} GFLOP/s")
    return rows


def model_specs(quick: bool) -> list[tuple]:
    """(group, model name, options, batch); rows of a group take turns."""
    big, small = (2, 4) if quick else (64, 128)
    return [
        ("paper AlexNet 224", "alexnet", {}, big),
        ("paper AlexNet 224", "alexnet", {"lrn": False}, big),
        ("alexnet_cifar (27x27)", "alexnet_cifar", {}, small),
        ("alexnet_cifar (27x27)", "alexnet_cifar", {"lrn": False}, small),
        ("cifar_4layer (Figure 1)", "cifar_4layer", {}, small),
        ("cifar_4layer (Figure 1)", "cifar_4layer",
         {"activation": "tanh"}, small),
        ("§3.3 nets (24x24)", "cifar_11pct", {}, small),
        ("§3.3 nets (24x24)", "cifar_11pct", {"lrn": False}, small),
        ("§3.3 nets (24x24)", "cifar_13pct", {}, small),
    ]


def build(name: str, options: dict):
    from alexnet_lib.models import CifarConvLocalNet, create_model
    if name == "cifar_11pct" and options:  # the 11% net without LRN
        return CifarConvLocalNet(local3_filters=64, **options)
    return create_model(name, **options)


def step_fn(model, batch: int, bf16: bool):
    """One SGD step on a fixed batch; bf16: autocast + channels_last."""
    import torch
    import torch.nn.functional as F
    from alexnet_lib.config import SpeedConfig
    from alexnet_lib.speed import apply_speed
    size = model.input_size
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g) * 60
    y = torch.randint(0, 10, (batch,), generator=g)
    apply_speed(model, SpeedConfig(bf16=bf16, channels_last=bf16), "cpu")
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def label(name: str, options: dict) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in options.items())
    return f"{name}({extra})" if extra else name


def model_rows(dtypes, peaks: dict, quick: bool) -> list[dict]:
    import torch
    from alexnet_lib.speed import count_flops
    warmup, steps = (1, 2) if quick else (2, 6)
    rows, groups = [], {}
    for group, name, options, batch in model_specs(quick):
        groups.setdefault(group, []).append((name, options, batch))
    for group, members in groups.items():
        for dtype in dtypes:
            bf16 = dtype == torch.bfloat16
            torch.manual_seed(0)
            models = [build(n, o) for n, o, _ in members]
            flops = [count_flops(m)["train"] for m in models]
            fns = [step_fn(m, b, bf16) for m, (_, _, b) in
                   zip(models, members)]
            times = time_steps(fns, warmup, steps)
            for (n, o, b), f, t in zip(members, flops, times):
                med = statistics.median(t)
                rate = b / med
                row = {"group": group, "model": label(n, o), "batch": b,
                       "dtype": str(dtype), "images_per_s": rate,
                       "train_flop_per_image": f,
                       "flop_per_s": rate * f,
                       "share_of_peak": rate * f / peaks[str(dtype)],
                       "median_s": med, "times_s": t}
                rows.append(row)
                print(f"  {row['model']:<40}{row['dtype']:>16}"
                      f"{rate:>9.1f} img/s{rate * f / 1e9:>8.1f} GFLOP/s"
                      f"{100 * row['share_of_peak']:>6.1f}% of peak")
            del models, fns
    return rows


def lrn_shares(rows: list[dict]) -> list[dict]:
    """LRN's share of a step: 1 - t(without LRN) / t(with LRN)."""
    out = []
    for r in rows:
        if "lrn=False" not in r["model"]:
            continue
        base = r["model"].replace("(lrn=False)", "")
        with_lrn = [w for w in rows if w["model"] == base
                    and w["dtype"] == r["dtype"]]
        if with_lrn:
            w = with_lrn[0]
            out.append({"model": base, "dtype": r["dtype"],
                        "lrn_share_of_step":
                            1 - r["median_s"] / w["median_s"]})
    for s in out:
        print(f"  LRN share of a {s['model']} step ({s['dtype']}): "
              f"{100 * s['lrn_share_of_step']:.1f}%")
    return out


def lrn_time_in_step(dtypes, quick: bool) -> list[dict]:
    """LRN's share of a paper-AlexNet step, timed inside the step.

    The wall time of the LRN layers' forward and backward during real
    training steps, over the step time: a direct measure that
    background load cannot split unevenly (the with/without rows above
    compare two different runs). Two ways of running LRN:

    - "fused" (the library's default on a CPU): LRN and the max-pooling
      after it are one operation (``layers.lrn_max_pool``), timed around
      its kernel calls; the same pooling's time in the step of the net
      without LRN (module hooks) is taken off, leaving LRN's own cost.
    - "apart" (``ALEXNET_FUSE_LRN_POOL=0``): module hooks around each
      LRN forward and backward (hooks keep the layers apart anyway).
    """
    import torch
    from alexnet_lib import layers
    from alexnet_lib.kernels import lrn_kernel
    batch, warmup, steps = (2, 1, 2) if quick else (64, 2, 6)
    rows = []

    def begin(starts, key):
        def hook(*_):
            starts[key] = time.perf_counter()
        return hook

    def end(spent, starts, key):
        def hook(*_):
            spent[0] += time.perf_counter() - starts.pop(key)
        return hook

    def hooked(model, kind, spent):
        starts = {}
        for name, m in model.named_modules():
            if isinstance(m, kind) and name in ("lrn1", "lrn2", "pool1",
                                                "pool2"):
                m.register_forward_pre_hook(begin(starts, (name, "f")))
                m.register_forward_hook(end(spent, starts, (name, "f")))
                m.register_full_backward_pre_hook(begin(starts,
                                                        (name, "b")))
                m.register_full_backward_hook(end(spent, starts,
                                                  (name, "b")))

    def timed_kernel(spent):
        kernel = lrn_kernel()
        saved = {n: getattr(kernel, n) for n in ("pool_forward",
                                                 "pool_backward")}
        for name, fn in saved.items():
            def wrapper(*a, fn=fn):
                start = time.perf_counter()
                fn(*a)
                spent[0] += time.perf_counter() - start
            setattr(kernel, name, wrapper)
        return lambda: [setattr(kernel, n, f) for n, f in saved.items()]

    def measure(options, dtype, how):
        torch.manual_seed(0)
        model = build("alexnet", options)
        step = step_fn(model, batch, dtype == torch.bfloat16)
        spent, restore = [0.0], None
        if how == "fused":
            restore = timed_kernel(spent)
        elif how == "apart":
            hooked(model, layers.LocalResponseNorm, spent)
        else:  # the pooling alone, in the net without LRN
            hooked(model, torch.nn.MaxPool2d, spent)
        fuse, layers.FUSE_LRN_POOL = layers.FUSE_LRN_POOL, how == "fused"
        try:
            inside, times = [], []
            for i in range(warmup + steps):
                spent[0] = 0.0
                t = _timed(step)
                if i >= warmup:
                    inside.append(spent[0])
                    times.append(t)
        finally:
            layers.FUSE_LRN_POOL = fuse
            if restore:
                restore()
        return inside, times

    for dtype in dtypes:
        pool_s, _ = measure({"lrn": False}, dtype, "pool")
        pool = statistics.median(pool_s)
        # without the compiled kernel (ALEXNET_LRN_KERNEL=torch) or with
        # ALEXNET_FUSE_LRN_POOL=0 nothing is fused: the layers run apart
        fused = lrn_kernel() is not None and layers.FUSE_LRN_POOL
        for how in ("fused", "apart") if fused else ("apart",):
            inside, times = measure({}, dtype, how)
            if how == "fused":
                both = statistics.median(inside)
                inside = [s - pool for s in inside]
            shares = [s / t for s, t in zip(inside, times)]
            row = {"model": "alexnet", "batch": batch, "dtype": str(dtype),
                   "lrn": how,
                   "lrn_share_of_step": statistics.median(shares),
                   "lrn_s_per_step": statistics.median(inside),
                   "step_s": statistics.median(times), "shares": shares}
            if how == "fused":
                row.update(lrn_and_pool_s_per_step=both,
                           pool_alone_s_per_step=pool)
            rows.append(row)
            print(f"  LRN time inside an alexnet step ({row['dtype']}, "
                  f"{how}): {1e3 * row['lrn_s_per_step']:.0f} ms of "
                  f"{1e3 * row['step_s']:.0f} ms, "
                  f"{100 * row['lrn_share_of_step']:.1f}%")
    return rows


def lrn_rows(dtypes, quick: bool) -> list[dict]:
    import torch
    from alexnet_lib import layers
    batch = 2 if quick else 64
    shapes = {"conv1 maps (B, 96, 55, 55)": (batch, 96, 55, 55),
              "conv2 maps (B, 256, 27, 27)": (batch, 256, 27, 27)}
    from alexnet_lib import kernels

    def blocked(t):  # as on a machine without a C compiler
        saved = dict(kernels._state)
        kernels._state.update(kernel=None, status="blocked")
        try:
            return layers.local_response_norm(t, groups=2)
        finally:
            kernels._state.clear()
            kernels._state.update(saved)
    impls = {
        "alexnet_lib (compiled C kernel)": lambda t: (
            layers.local_response_norm(t, groups=2)),
        "alexnet_lib (blocked PyTorch kernel)": blocked,
        "plain formula (autograd)": lambda t: layers._lrn_reference(
            t, 5, 1e-4, 0.75, 2.0, 2),
        "torch.nn.LocalResponseNorm (one group)": lambda t: (
            torch.nn.functional.local_response_norm(t, 5, 5e-4, 0.75, 2.0))}
    rows = []
    for dtype in dtypes:
        if dtype == torch.bfloat16:  # avg_pool3d has no CPU bf16 kernel
            impls.pop("torch.nn.LocalResponseNorm (one group)")
        for shape_name, shape in shapes.items():
            x = (torch.relu(torch.randn(shape)) * 30).to(dtype)
            if dtype == torch.bfloat16:
                x = x.contiguous(memory_format=torch.channels_last)
            x.requires_grad_(True)
            g = torch.randn(shape).to(dtype)

            def run(f):
                def step():
                    x.grad = None
                    f(x).backward(g)
                return step
            times = time_steps([run(f) for f in impls.values()],
                               1, 2 if quick else 6)
            for name, t in zip(impls, times):
                rows.append({"maps": shape_name, "impl": name,
                             "dtype": str(dtype),
                             "median_s": statistics.median(t)})
                print(f"  LRN fwd+bwd {shape_name:<28}{name:<40}"
                      f"{str(dtype):>16}{1e3 * rows[-1]['median_s']:>8.1f}"
                      f" ms")
    return rows


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=available_cores(),
                   help="torch threads (default: the cores we may use)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes and few steps (a test of the script)")
    p.add_argument("--bf16", action="store_true", help="bf16 rows even "
                   "where the CPU lacks bfloat16 instructions")
    p.add_argument("--huge-pages", action="store_true",
                   help="THP_MEM_ALLOC_ENABLE=1 (2 MiB pages for large "
                        "tensors); must come before any large tensor")
    p.add_argument("--skip", nargs="*", default=[],
                   choices=["peak", "models", "lrn"])
    p.add_argument("--peak-from", type=Path, metavar="JSON",
                   help="with --skip peak: take the peaks from this record")
    p.add_argument("--json", type=Path, help="write the record here")
    args = p.parse_args(argv)
    if args.huge_pages:  # read by PyTorch at its first large allocation
        os.environ["THP_MEM_ALLOC_ENABLE"] = "1"
    import torch
    from alexnet_lib.speed import cpu_flags, cpu_has_native_bf16
    from alexnet_lib.kernels import kernel_status
    from alexnet_lib.sysinfo import environment
    torch.set_num_threads(args.threads)
    from alexnet_lib.speed import keep_freed_memory
    keep_freed_memory()  # as training does; ALEXNET_MALLOC=default: off
    native = cpu_has_native_bf16()
    dtypes = [torch.float32] + ([torch.bfloat16] if native or args.bf16
                                else [])
    start = time.perf_counter()
    print(f"{args.threads} threads, bf16 instructions: {native}")
    peak = [] if "peak" in args.skip else peak_rows(dtypes, args.quick)
    peaks = {str(d): max([r["flop_per_s"] for r in peak
                          if r["dtype"] == str(d)] or [float("nan")])
             for d in dtypes}
    if args.peak_from:
        peaks = json.loads(args.peak_from.read_text())["peak_flop_per_s"]
    models = ([] if "models" in args.skip
              else model_rows(dtypes, peaks, args.quick))
    inside = ([] if "models" in args.skip
              else lrn_time_in_step(dtypes, args.quick))
    lrn = [] if "lrn" in args.skip else lrn_rows(dtypes, args.quick)
    report = {
        "benchmark": "roofline", "quick": args.quick,
        "date": datetime.datetime.now(datetime.timezone.utc)
        .isoformat(timespec="seconds"),
        "threads": args.threads,
        "huge_pages": os.environ.get("THP_MEM_ALLOC_ENABLE") == "1",
        "cpu_bf16_instructions": native,
        "cpu_bf16_flags": sorted(cpu_flags() & {"avx512_bf16", "amx_bf16",
                                                "amx_tile", "bf16"}),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "peak_flop_per_s": peaks, "peak": peak,
        "peak_from": str(args.peak_from) if args.peak_from else None,
        "models": models,
        "lrn_kernel": kernel_status(),
        "lrn_share": lrn_shares(models), "lrn_time_in_step": inside,
        "lrn": lrn,
        "wall_s": round(time.perf_counter() - start, 1),
        "environment": environment()}
    write_record(args.json, report)
    return report


if __name__ == "__main__":
    main()
