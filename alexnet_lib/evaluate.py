"""Top-1 and top-5 *error* rates, the numbers the paper reports (§6).

An image counts as a top-k error when its label is not among the k
classes the model finds most probable. Rates are fractions in [0, 1].
With ``ten_crop`` the softmax is averaged over the ten 224x224 patches
(four corners + centre, and their reflections) before ranking (§4.1).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from alexnet_lib.distributed import (all_reduce_sum, get_world_size,
                                     unwrap)


def topk_correct(scores: torch.Tensor, targets: torch.Tensor,
                 ks: Sequence[int] = (1, 5)) -> torch.Tensor:
    """How many rows have their target among the top k scores, per k.

    scores: (B, C) logits or probabilities; targets: (B,) int64.
    Returns a float tensor (len(ks),). A k above C counts every row.
    """
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices  # (B, kmax), best first
    hit = top == targets[:, None]  # (B, kmax), at most one True per row
    return torch.stack([hit[:, :min(k, kmax)].any(1).sum() for k in ks]
                       ).float()


def topk_errors(logits: torch.Tensor, targets: torch.Tensor,
                ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """{k: top-k error rate} for one batch of (B, C) scores."""
    n = targets.numel()
    correct = topk_correct(logits, targets, ks)
    return {k: 1.0 - correct[i].item() / n for i, k in enumerate(ks)}


def _accumulate(net: nn.Module, loader: Iterable, device, ten_crop: bool,
                sums: torch.Tensor) -> None:
    """Add loss, top-1 hits, top-5 hits and images of ``loader``."""
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if ten_crop:
            if x.dim() != 5 or x.shape[1] != 10:
                raise ValueError(f"ten_crop expects x of shape "
                                 f"(B, 10, 3, S, S), got {tuple(x.shape)}")
            b = x.shape[0]
            logits = net(x.flatten(0, 1))  # (B*10, C)
            probs = logits.float().softmax(1).view(b, 10, -1).mean(1)
            loss = F.nll_loss(probs.clamp_min(1e-12).log(), y,
                              reduction="sum")
            scores = probs  # (B, C) averaged softmax
        else:
            scores = net(x).float()  # (B, C)
            loss = F.cross_entropy(scores, y, reduction="sum")
        sums[0] += loss
        sums[1:3] += topk_correct(scores, y, (1, 5)).to(sums)
        sums[3] += y.numel()


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device | str,
             ten_crop: bool = False, sharded: bool = True
             ) -> dict[str, float]:
    """Top-1/top-5 error, mean cross-entropy loss and image count.

    loader yields (x, y): x (B, 3, S, S), or (B, 10, 3, S, S) with
    ``ten_crop``. Under torch.distributed the counts are summed over all
    processes, so every rank returns the same numbers; ``sharded=False``
    says every rank saw the whole set (the sums are then averaged).
    """
    # The bare module: every rank scores its own images, no DDP sync.
    net = unwrap(model)
    was_training = net.training
    net.eval()
    # sums: loss, top-1 correct, top-5 correct, images
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    # A DataLoader draws a seed from the global RNG; evaluating must not
    # change the dropout masks of the training that follows.
    with torch.random.fork_rng(devices=[]):
        _accumulate(net, loader, device, ten_crop, sums)
    net.train(was_training)
    all_reduce_sum(sums)
    if not sharded:
        sums /= get_world_size()
    n = max(sums[3].item(), 1.0)
    return {"top1_error": 1.0 - sums[1].item() / n,
            "top5_error": 1.0 - sums[2].item() / n,
            "loss": sums[0].item() / n,
            "n": int(sums[3].item())}


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, device: torch.device | str,
            ten_crop: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities (N, C), labels (N,)) of every image of ``loader``,
    on the CPU, in loader order: the softmax, averaged over the ten
    patches with ``ten_crop`` (§4.1). For looking at the errors; the
    error rates themselves come from :func:`evaluate`."""
    net = unwrap(model)
    was_training = net.training
    net.eval()
    probs, labels = [], []
    with torch.random.fork_rng(devices=[]):
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            if ten_crop:
                if x.dim() != 5 or x.shape[1] != 10:
                    raise ValueError(f"ten_crop expects x of shape "
                                     f"(B, 10, 3, S, S), got "
                                     f"{tuple(x.shape)}")
                p = net(x.flatten(0, 1)).float().softmax(1)
                p = p.view(x.shape[0], 10, -1).mean(1)
            else:
                p = net(x).float().softmax(1)
            probs.append(p.cpu())
            labels.append(torch.as_tensor(y).cpu())
    net.train(was_training)
    return torch.cat(probs), torch.cat(labels)


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor,
                     num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    predicted, labels = predicted.long().flatten(), labels.long().flatten()
    if predicted.shape != labels.shape:
        raise ValueError(f"{predicted.numel()} predictions for "
                         f"{labels.numel()} labels")
    if predicted.numel() and max(predicted.max(), labels.max()) >= \
            num_classes:
        raise ValueError(f"a class index is >= num_classes={num_classes}")
    flat = labels * num_classes + predicted
    return torch.bincount(flat, minlength=num_classes ** 2).view(
        num_classes, num_classes)


def most_confused(matrix: torch.Tensor, k: int = 5
                  ) -> list[tuple[int, int, int]]:
    """The k largest off-diagonal cells as (true, predicted, count),
    largest first (ties: lower true class, then lower predicted)."""
    c = matrix.shape[0]
    cells = [(int(matrix[i, j]), i, j) for i in range(c) for j in range(c)
             if i != j and matrix[i, j] > 0]
    cells.sort(key=lambda t: (-t[0], t[1], t[2]))
    return [(i, j, n) for n, i, j in cells[:k]]
