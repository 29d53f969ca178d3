"""ImageNet-scale speed: training steps, input pipelines, 90-epoch time.

    python benchmarks/bench_imagenet_scale.py --device cpu   # minutes
    python benchmarks/bench_imagenet_scale.py --device cuda  # a GPU

1. Training step (forward + loss + backward + SGD update) in images/s on
   synthetic data already on the device: torchvision's alexnet, fp32
   eager (the pytorch/examples baseline, batch 256 on a GPU), against
   the paper's AlexNet fp32 eager, bf16 + channels_last, and + compile,
   at several batch sizes.
2. Input pipeline in images/s: torchvision ImageFolder + PIL (the
   pytorch/examples transforms) with N workers, alexnet_lib's per-image
   path (decode="pil") and its batched path (decode="batched", decoding
   on the device), on Imagenette and on generated ~500x375 JPEGs of
   ImageNet's typical size (~110 KB).
3. The projected 90-epoch time on ILSVRC-2012 (1,281,167 training
   images) from the slower of the best step and the best pipeline.

The CPU mode uses small batches and few steps: its numbers show the
method and the order of magnitude, not what a GPU machine reaches.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_alexnet_cpu import (  # noqa: E402
    available_cores, time_steps, write_record)

from alexnet_lib.config import (SpeedConfig, TrainConfig,  # noqa: E402
                                apply_profile, data_root)
from alexnet_lib.data import build_loaders  # noqa: E402
from alexnet_lib.models import create_model  # noqa: E402
from alexnet_lib.speed import apply_speed  # noqa: E402
from alexnet_lib.sysinfo import environment  # noqa: E402

ILSVRC_TRAIN = 1_281_167  # training images of ILSVRC-2012 (§2)
EPOCHS = 90  # §5


def step_fn(model, batch: int, device: torch.device):
    """One SGD step on a fixed synthetic batch resident on ``device``."""
    x = torch.randn(batch, 3, 224, 224, device=device) * 60
    y = torch.randint(0, 1000, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()  # time the work, not its launch
    return step


def training_rows(device, batches, warmup, steps, compile_batches):
    import torchvision
    off = SpeedConfig(*[False] * 5)
    fast = SpeedConfig(bf16=True, channels_last=True, compile=False,
                       cudnn_benchmark=True, tf32=True)
    variants = {
        "torchvision alexnet fp32 eager": lambda: torchvision.models
        .alexnet().to(device),
        "paper AlexNet fp32 eager": lambda: apply_speed(
            create_model("alexnet").to(device), off, device),
        "paper AlexNet bf16 + channels_last": lambda: apply_speed(
            create_model("alexnet").to(device), fast, device),
        "paper AlexNet bf16 + channels_last + compile": lambda: apply_speed(
            create_model("alexnet").to(device),
            dataclasses.replace(fast, compile=True), device),
    }
    rows = []
    for name, build in variants.items():
        for batch in batches:
            if "compile" in name and batch not in compile_batches:
                rows.append({"name": name, "batch": batch, "skipped":
                             "compile not asked for at this batch "
                             "(--compile, --compile-batches)"})
                continue
            model = build()
            start = time.perf_counter()
            times = time_steps([step_fn(model, batch, device)], warmup,
                               steps)[0]
            med = statistics.median(times)
            rows.append({"name": name, "batch": batch, "median_s": med,
                         "images_per_s": batch / med, "times_s": times,
                         "wall_s": time.perf_counter() - start})
            print(f"{name:<46}{batch:>6}{batch / med:>12.1f} img/s")
            del model
    return rows


def against_baseline(rows: list[dict]) -> dict:
    """The best paper-AlexNet rate, and its ratio to the pytorch/examples
    configuration (torchvision alexnet, fp32 eager, batch 256 or the
    nearest batch timed)."""
    timed = [r for r in rows if "images_per_s" in r]
    base = [r for r in timed if r["name"].startswith("torchvision")]
    paper = [r for r in timed if r["name"].startswith("paper")]
    if not base or not paper:
        return {}
    ref = min(base, key=lambda r: abs(r["batch"] - 256))
    best = max(paper, key=lambda r: r["images_per_s"])
    out = {"baseline": f"{ref['name']}, batch {ref['batch']}",
           "baseline_images_per_s": ref["images_per_s"],
           "best": f"{best['name']}, batch {best['batch']}",
           "best_images_per_s": best["images_per_s"],
           "ratio": best["images_per_s"] / ref["images_per_s"]}
    print(f"best paper AlexNet: {out['best']} at "
          f"{out['best_images_per_s']:,.0f} img/s = {out['ratio']:.2f}x "
          f"the pytorch/examples configuration ({out['baseline']})")
    return out


def make_jpegs(folder: Path, n: int, unique: int | None = None) -> float:
    """``n`` 500x375 photo-like JPEGs in 2 classes; mean file KB.

    Only ``unique`` (default n) are encoded; the rest are hard links to
    them (decoding costs the same; encoding thousands takes minutes).
    """
    from torchvision.io import encode_jpeg
    g = torch.Generator().manual_seed(0)
    unique = min(unique or n, n)
    sizes, first = [], {}
    for i in range(n):
        for split in ("train", "val"):
            d = folder / split / f"n0000000{i % 2}"
            d.mkdir(parents=True, exist_ok=True)
            path = d / f"img{i}.JPEG"
            if i >= unique:
                try:
                    os.link(first[split, i % unique], path)
                    continue
                except OSError:  # no hard links here: copy the bytes
                    path.write_bytes(first[split, i % unique].read_bytes())
                    continue
            if split == "train":
                low = torch.rand(1, 3, 24, 32, generator=g) * 255
                img = F.interpolate(low, size=(375, 500),
                                    mode="bicubic")[0]
                img = img + torch.randn(3, 375, 500, generator=g) * 21
                data = encode_jpeg(img.clamp(0, 255).to(torch.uint8),
                                   quality=90).numpy().tobytes()
                sizes.append(len(data))
            path.write_bytes(data)
            first[split, i] = path
    return sum(sizes) / len(sizes) / 1e3


def folder_loader(root: Path, batch: int, workers: int):
    """pytorch/examples' ImageNet training input: ImageFolder + PIL."""
    from torchvision import datasets, transforms as T
    tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(),
                    T.ToTensor(), T.Normalize([0.485, 0.456, 0.406],
                                              [0.229, 0.224, 0.225])])
    return torch.utils.data.DataLoader(
        datasets.ImageFolder(str(root / "train"), tf), batch_size=batch,
        shuffle=True, num_workers=workers, drop_last=True)


def images_per_s(loader, device, max_batches: int, workers: int) -> float:
    """Steady-state rate: the batches workers made ahead are not timed."""
    it, n = iter(loader), 0
    for _ in range(1 + 2 * workers):  # DataLoader prefetches 2 per worker
        next(it)
    start = time.perf_counter()
    for i, (x, _) in enumerate(it):
        x = x.to(device)
        n += x.shape[0]
        if i + 1 == max_batches:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def pipeline_rows(sets, device, batch, workers_list, max_batches):
    rows = []
    for set_name, root in sets.items():
        have = sum(1 for _ in (root / "train").glob("*/*"))
        for workers in workers_list:
            need = batch * (max_batches + 2 + 2 * workers)
            if have < need:
                rows.append({"data": set_name, "workers": workers,
                             "batch": batch, "skipped": f"{have} training "
                             f"images, {need} needed"})
                print(f"{set_name:<28}{workers:>3} workers: skipped "
                      f"({have} images, {need} needed)")
                continue
            # enough images for the timed batches; fewer makes the
            # mean image (computed first, not timed) quick
            cfg = apply_profile(TrainConfig(), "ci").replace(
                data__root=str(root), data__num_workers=workers,
                optim__batch_size=batch,
                data__train_subset=batch * (max_batches + 2 + 2 * max(
                    workers_list)),
                data__val_subset=batch)
            loaders = {
                "ImageFolder + PIL (pytorch/examples)":
                    lambda: folder_loader(root, batch, workers),
                "alexnet_lib decode=pil": lambda: build_loaders(
                    cfg.data, batch, cfg.seed, cfg.profile,
                    device=device)[0],
                "alexnet_lib decode=batched": lambda: build_loaders(
                    cfg.replace(data__decode="batched").data, batch,
                    cfg.seed, cfg.profile, device=device)[0]}
            for name, make in loaders.items():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    rate = images_per_s(make(), device, max_batches,
                                        workers)
                rows.append({"data": set_name, "name": name,
                             "workers": workers, "batch": batch,
                             "images_per_s": rate})
                print(f"{set_name:<28}{name:<38}{workers:>3} workers"
                      f"{rate:>10.1f} img/s")
    return rows


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batches", type=int, nargs="+", help="training "
                   "batch sizes (cpu: 8 16; cuda: 256 512 1024)")
    p.add_argument("--steps", type=int, help="timed steps (cpu 3)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--compile", action="store_true", help="also time "
                   "torch.compile (always on with --device cuda)")
    p.add_argument("--compile-batches", type=int, nargs="+",
                   help="batch sizes to compile at (default: all)")
    p.add_argument("--pipeline-batch", type=int,
                   help="input pipeline batch (cpu 16; cuda 256)")
    p.add_argument("--pipeline-batches", type=int,
                   help="timed pipeline batches (cpu 12; cuda 20)")
    p.add_argument("--unique-jpegs", type=int, help="JPEGs encoded; the "
                   "rest of --jpegs are hard links to them")
    p.add_argument("--imagenette", type=Path, help="an Imagenette copy "
                   "for the pipeline rows (default: "
                   "<data root>/imagenette2-224, when present)")
    p.add_argument("--workers", type=int, nargs="+", help="loader "
                   "workers to try (cpu: 0 2; cuda: 8 16)")
    p.add_argument("--jpegs", type=int, help="generated JPEGs (cpu 288)")
    p.add_argument("--json", type=Path, help="write the report here "
                   "(e.g. results/benchmarks/imagenet_scale_cpu.json)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cpu = device.type == "cpu"
    torch.set_num_threads(available_cores())
    from alexnet_lib.speed import keep_freed_memory
    keep_freed_memory()  # as training does; ALEXNET_MALLOC=default: off
    batches = args.batches or ([8, 16] if cpu else [256, 512, 1024])
    steps = args.steps or (3 if cpu else 20)
    workers = args.workers or ([0, 2] if cpu else [8, 16])
    with_compile = args.compile or not cpu
    train = training_rows(device, batches, args.warmup, steps,
                          (args.compile_batches or batches)
                          if with_compile else [])
    env = environment()  # as the training rows ran (threads)
    # One torch thread in the main process, as in each worker: on a
    # busy machine two spinning OpenMP threads per small op cost more
    # than they bring (measured: up to 10x slower at 0 workers).
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        # mean images of these throw-away folders: cached in tmp too
        os.environ["ALEXNET_CACHE"] = str(Path(tmp) / "cache")
        kb = make_jpegs(Path(tmp) / "jpegs", args.jpegs or
                        (288 if cpu else 16384), args.unique_jpegs or
                        (None if cpu else 1024))
        sets = {"imagenette2-224": args.imagenette or
                data_root() / "imagenette2-224",
                f"generated 500x375 ({kb:.0f} KB)": Path(tmp) / "jpegs"}
        sets = {k: v for k, v in sets.items() if (v / "train").is_dir()}
        pipe = pipeline_rows(sets, device, args.pipeline_batch or
                             (16 if cpu else 256), workers,
                             args.pipeline_batches or (12 if cpu else 20))
    best_step = max(r.get("images_per_s", 0) for r in train)
    large = [r["images_per_s"] for r in pipe
             if "generated" in r["data"] and "images_per_s" in r]
    best_pipe = max(large or [r.get("images_per_s", 0) for r in pipe]
                    or [float("nan")])
    rate = best_step if best_pipe != best_pipe else min(best_step,
                                                        best_pipe)
    hours = EPOCHS * ILSVRC_TRAIN / rate / 3600
    print(f"best step {best_step:.1f} img/s, best pipeline on ImageNet-"
          f"size JPEGs {best_pipe:.1f} img/s: 90 epochs of ILSVRC-2012 "
          f"in {hours:,.1f} h")
    targets = against_baseline(train)
    report = {"device": str(device), "train_threads": available_cores(),
              "pipeline_main_threads": 1,
              "training_step": train, "input_pipeline": pipe,
              "projection": {"epochs": EPOCHS, "images": ILSVRC_TRAIN,
                             "best_step_images_per_s": best_step,
                             "best_pipeline_images_per_s": best_pipe,
                             "hours": hours},
              "targets": targets,
              "environment": env}
    write_record(args.json, report)
    return report


if __name__ == "__main__":
    main()
