"""CIFAR-10 input pipelines on the CPU: in-memory batches vs PIL per image.

    python benchmarks/bench_cifar_pipeline.py [--data DIR] [--crop 24]
        [--model cifar_4layer|alexnet_cifar] [--batch 128]
        [--batches 40] [--steps 20] [--repeats 3] [--threads N]
        [--quick] [--json out.json]

(a) Data path alone, images/s: alexnet_lib's CifarLoader (uint8 tensors
in memory, mean subtraction in batched tensor ops) without augmentation
(centre crops), with random crops + mirrors (§4.1), and with PCA colour
noise on top, against torchvision's ImageFolder + PIL transforms
(RandomCrop + RandomHorizontalFlip + ToTensor + Normalize) through a
DataLoader with 0 and 2 workers.
(b) End to end, images/s: SGD training steps of ``--model`` (the CIFAR
4-layer net, or the AlexNet proxy with 27x27 crops; batch 128) fed by
each pipeline. The number to watch: crops + mirrors + PCA colour as a
share of the images/s without augmentation.

Each measurement is a segment: a fresh iterator, ``warmup`` untimed
batches (worker start-up), then timed batches. Segments of the
pipelines take turns, ``--repeats`` times; the median is reported, so
background load on a shared machine falls on all of them alike.
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

from alexnet_lib.data import CifarLoader, compute_mean_image, load_cifar10
from alexnet_lib.data.cifar import find_cifar10


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset / cgroups
    except AttributeError:
        return os.cpu_count() or 1


def image_folder_loader(root: Path, crop: int, batch: int, workers: int,
                        mean: torch.Tensor):
    """The usual torchvision recipe: decode + transform one PIL image at
    a time in Dataset.__getitem__, batched by a DataLoader."""
    from torchvision import datasets, transforms
    rgb_mean = (mean.mean((1, 2)) / 255).tolist()
    tf = transforms.Compose([
        transforms.RandomCrop(crop, padding=4 if crop == 32 else 0),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(rgb_mean, [0.25, 0.25, 0.25])])
    ds = datasets.ImageFolder(str(root / "train"), transform=tf)
    return torch.utils.data.DataLoader(
        ds, batch_size=batch, shuffle=True, num_workers=workers,
        drop_last=True, persistent_workers=False)


def segment(make_loader, batches: int, warmup: int, step=None) -> float:
    """Images/s over ``batches`` batches after ``warmup`` untimed ones."""
    it = iter(make_loader())
    for _ in range(warmup):
        x, y = next(it)
        if step:
            step(x, y)
    n, start = 0, time.perf_counter()
    for _ in range(batches):
        x, y = next(it)
        if step:
            step(x, y)
        n += len(y)
    rate = n / (time.perf_counter() - start)
    del it  # stops DataLoader workers
    return rate


def take_turns(pipelines: dict, batches: int, warmup: int, repeats: int,
               step=None) -> dict[str, float]:
    rates = {name: [] for name in pipelines}
    for _ in range(repeats):
        for name, make in pipelines.items():
            rates[name].append(segment(make, batches, warmup, step))
    return {name: statistics.median(r) for name, r in rates.items()}


def training_step(crop: int, name: str = "cifar_4layer"):
    """One SGD step of the named CIFAR net, or None if not available."""
    try:
        from alexnet_lib.models import create_model
        model = create_model(name, input_size=crop)
    except (ImportError, ValueError, TypeError) as err:
        print(f"skipping end-to-end: cifar_4layer not available ({err})")
        return None
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None,
                   help="CIFAR-10 folder or data root ($ALEXNET_DATA)")
    p.add_argument("--crop", type=int, default=24,
                   help="24 (cuda-convnet) or 32 (padding 4 for PIL)")
    p.add_argument("--model", default="cifar_4layer",
                   choices=("cifar_4layer", "alexnet_cifar"),
                   help="network of the end-to-end rows")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--batches", type=int, default=40,
                   help="timed batches per data-path segment")
    p.add_argument("--steps", type=int, default=20,
                   help="timed training steps per end-to-end segment")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=available_cores())
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 5 batches, 3 steps, 1 repeat")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.batches, args.steps, args.repeats = 5, 3, 1
    torch.set_num_threads(args.threads)
    from alexnet_lib.speed import keep_freed_memory
    keep_freed_memory()  # as training does; ALEXNET_MALLOC=default: off

    start = time.perf_counter()
    train = load_cifar10(args.data, "train")
    load_s = time.perf_counter() - start
    kind, folder = find_cifar10(args.data)
    mean = compute_mean_image(train.images)
    crop = args.crop if args.crop < 32 else None
    b = args.batch

    def memory(pca_std, augment=True):
        return lambda: CifarLoader(train.images, train.labels, b,
                                   crop=crop, flip=augment,
                                   random_crop=augment, pca_std=pca_std,
                                   mean=mean, drop_last=True)
    pipelines = {"in-memory, no augmentation": memory(0.0, False),
                 "in-memory CifarLoader": memory(0.0),
                 "in-memory CifarLoader + PCA": memory(0.1)}
    if kind == "folder":
        for w in (0, 2):
            pipelines[f"ImageFolder+PIL, {w} workers"] = (
                lambda w=w: image_folder_loader(folder, args.crop, b, w,
                                                mean))
    else:
        print(f"no image folder at {folder}: PIL rows skipped")

    print(f"threads {args.threads}, batch {b}, crop {args.crop}, model "
          f"{args.model}; "
          f"load_cifar10('train') took {load_s:.2f} s")
    results = {"threads": args.threads, "batch": b, "crop": args.crop,
               "model": args.model,
               "load_s": load_s, "data_path": take_turns(
                   pipelines, args.batches, args.warmup, args.repeats)}
    step = training_step(args.crop, args.model)
    if step is not None:
        results["end_to_end"] = take_turns(
            pipelines, args.steps, args.warmup, args.repeats, step)
    print(format_table(results))
    if args.json:
        try:
            from alexnet_lib.sysinfo import environment
            results["environment"] = environment()
        except ImportError:
            pass
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return results


def format_table(results: dict) -> str:
    names = list(results["data_path"])
    e2e = results.get("end_to_end", {})
    rows = [f"{'pipeline':32s} {'data path img/s':>16s} "
            f"{'train img/s':>12s}"]
    for name in names:
        train = f"{e2e[name]:12.0f}" if name in e2e else f"{'-':>12s}"
        rows.append(f"{name:32s} {results['data_path'][name]:16.0f} "
                    f"{train}")
    base = results["data_path"].get("ImageFolder+PIL, 2 workers")
    mem = results["data_path"]["in-memory CifarLoader"]
    pca = results["data_path"]["in-memory CifarLoader + PCA"]
    if base:
        rows.append(f"data path speed-up vs PIL (2 workers): "
                    f"{mem / base:.1f}x")
    rows.append(f"PCA cost on the data path: {100 * (mem / pca - 1):.0f}%")
    if e2e:
        e_mem = e2e["in-memory CifarLoader"]
        e_pca = e2e["in-memory CifarLoader + PCA"]
        rows.append(f"PCA cost end to end: {100 * (e_mem / e_pca - 1):.0f}%")
        bare = e2e.get("in-memory, no augmentation")
        if bare:
            rows.append(f"crops + mirrors + PCA end to end: "
                        f"{100 * e_pca / bare:.0f}% of the images/s "
                        f"without augmentation")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
