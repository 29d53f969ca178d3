"""Seeded ablation runs at CIFAR-10 scale, shared by the chapters.

§3.2 (two GPUs), §3.4 (overlapping pooling) and the §4 ablations all
ask one question: does switch X change the test error and the gap
between training and test error? ``proxy_run`` answers it for one
network and one seed with the paper's recipe scaled down (§5 update
rule, batch 128, momentum 0.9, weight decay 5e-4, lr 0.01 divided by 10
for the last epochs; §4.1 random crops and mirrors; the mean image
subtracted from 0..255 pixels), and ``mean_std`` summarises seeds.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from alexnet_lib.config import OptimConfig
from alexnet_lib.data.cifar_loader import CifarLoader
from alexnet_lib.evaluate import evaluate
from alexnet_lib.optim import build_optimizer
from alexnet_lib.train import seed_everything, train_one_epoch

__all__ = ["ProxyPlan", "proxy_run", "mean_std", "paired_differences",
           "train_eval_indices", "progress_bar", "epoch_summary"]


@dataclass(frozen=True)
class ProxyPlan:
    """How long and how a proxy run trains (the method, not the net)."""
    epochs: int = 10
    # DEVIATION: a fixed, compressed form of §5's schedule: lr 0.01,
    # divided by 10 for the last ``low_lr_epochs`` epochs, instead of
    # dividing on each validation plateau over ~90 epochs.
    low_lr_epochs: int = 2
    lr: float = 0.01  # §5
    batch_size: int = 128  # §5
    crop: int = 27  # the proxy's input (alexnet_lib.models.proxy)
    flip: bool = True  # §4.1
    train_eval_images: int = 10_000  # training images scored at the end

    def __post_init__(self):
        if self.epochs < 1 or not 0 <= self.low_lr_epochs <= self.epochs:
            raise ValueError(
                f"ProxyPlan: need epochs >= 1 and 0 <= low_lr_epochs <= "
                f"epochs, got epochs={self.epochs}, "
                f"low_lr_epochs={self.low_lr_epochs}")


def proxy_run(make_model: Callable[[], nn.Module], train, test,
              plan: ProxyPlan, seed: int, mean: torch.Tensor,
              device="cpu", log: bool | None = True,
              name: str = "") -> dict:
    """Train one freshly built model; return its curve and final errors.

    train, test: ``CifarTensors``; mean: the (3, 32, 32) mean image of
    the training images on the 0..255 scale. The final numbers are
    top-1 errors in evaluation mode on centre crops: ``test_error`` on
    the test images, ``train_error`` on ``plan.train_eval_images``
    training images spread evenly over the set (``train_eval_indices``;
    the loaded set is sorted by class), and their difference
    ``gap`` (how much the net overfits). ``log``: one progress bar
    for the run, its postfix the last epoch's errors (None: silent).
    """
    seed_everything(seed)  # same seed: same initial weights
    model = make_model().to(device)
    optimizer = build_optimizer(model, OptimConfig(lr=plan.lr))
    loader = CifarLoader(train.images, train.labels, plan.batch_size,
                         seed=seed, crop=plan.crop, flip=plan.flip,
                         mean=mean, device=device)
    # The loaded images are sorted by class, so the first N would score
    # only a few classes: score a fixed spread-out sample instead.
    scored = train_eval_indices(len(train), plan.train_eval_images)
    train_eval = CifarLoader(train.images[scored], train.labels[scored],
                             500, shuffle=False, crop=plan.crop, mean=mean,
                             train=False, device=device)
    test_eval = CifarLoader(test.images, test.labels, 500, shuffle=False,
                            crop=plan.crop, mean=mean, train=False,
                            device=device)
    curve, start = [], time.perf_counter()
    bar = progress_bar(plan.epochs, f"{name} seed {seed}", enabled=log)
    for epoch in range(plan.epochs):
        lr = plan.lr * (0.1 if epoch >= plan.epochs - plan.low_lr_epochs
                        else 1.0)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loader.set_epoch(epoch)
        fit = train_one_epoch(model, loader, optimizer, device)
        val = evaluate(model, test_eval, device)
        curve.append(dict(epoch=epoch + 1, lr=lr,
                          running_error=round(fit["error"], 4),
                          loss=round(fit["loss"], 4),
                          test_error=round(val["top1_error"], 4),
                          images_per_s=round(fit["images_per_s"], 1)))
        bar.set_postfix_str(epoch_summary(fit, val), refresh=False)
        bar.update()
    bar.close()
    final_train = evaluate(model, train_eval, device)["top1_error"]
    final_test = curve[-1]["test_error"]
    return dict(seed=seed, curve=curve, test_error=final_test,
                train_error=round(final_train, 4),
                gap=round(final_test - final_train, 4),
                seconds=round(time.perf_counter() - start, 1),
                parameters=sum(p.numel() for p in model.parameters()))


def progress_bar(epochs: int, desc: str, enabled: bool | None = True):
    """One compact display per run: a tqdm bar over its epochs, kept
    when done (a widget in Jupyter, a text line elsewhere)."""
    return tqdm(total=epochs, desc=desc.strip(), unit="epoch",
                leave=True, disable=not enabled)


def epoch_summary(fit: dict, val: dict) -> str:
    """The bar's postfix: 'running error 0.488, test error 0.443, 536
    images/s' from ``train_one_epoch`` and ``evaluate`` results."""
    return (f"running error {fit['error']:.3f}, test error "
            f"{val['top1_error']:.3f}, {fit['images_per_s']:.0f} images/s")


def train_eval_indices(n: int, count: int) -> torch.Tensor:
    """``min(count, n)`` indices spread evenly over ``range(n)``, sorted.

    Evenly spaced, so a class-sorted set is sampled in proportion to its
    classes; the same for every run, so every run scores the same images.
    """
    count = min(count, n)
    return (torch.arange(count, dtype=torch.float64) * n / count).long()


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for a single value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std needs at least one value")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def paired_differences(runs_a: list[dict], runs_b: list[dict],
                       key: str = "test_error") -> list[float]:
    """b - a for each seed both lists ran (matched by ``seed``)."""
    b_by_seed = {r["seed"]: r[key] for r in runs_b}
    diffs = [b_by_seed[r["seed"]] - r[key] for r in runs_a
             if r["seed"] in b_by_seed]
    if not diffs:
        raise ValueError("the two lists of runs share no seed")
    return diffs
