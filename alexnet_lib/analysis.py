"""What §6.1 looks at in a trained network: kernels, top-5, neighbours.

Figure 3 shows conv1's 96 kernels, 48 per GPU, and the text says one
GPU's kernels are "largely color-agnostic" and the other's "largely
color-specific"; ``colour_fraction`` turns that into a number per
kernel. Figure 4 shows the five most probable labels of test images
(``top_k``) and the training images closest to them in the 4096-d last
hidden layer (``nearest_neighbours`` on ``penultimate_features``).
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from torchvision.utils import make_grid

__all__ = ["normalise_kernels", "kernel_grid", "colour_fraction",
           "colour_fraction_by_tower", "top_k", "penultimate_features",
           "nearest_neighbours", "neighbour_agreement",
           "confident_mistakes", "average_probabilities",
           "tower_gap_p_value"]


def _check_kernels(weight: torch.Tensor) -> torch.Tensor:
    if weight.dim() != 4 or weight.shape[1] != 3:
        raise ValueError(f"expected first-layer kernels of shape (N, 3, "
                         f"k, k), got {tuple(weight.shape)}: pass "
                         f"model.conv1.weight")
    return weight.detach().float().cpu()


def normalise_kernels(weight: torch.Tensor) -> torch.Tensor:
    """Each kernel scaled to [0, 1] on its own, the three colours
    together (so a kernel's colour balance is kept). (N, 3, k, k)."""
    w = _check_kernels(weight)
    low = w.amin(dim=(1, 2, 3), keepdim=True)
    high = w.amax(dim=(1, 2, 3), keepdim=True)
    return (w - low) / (high - low).clamp_min(1e-12)


def kernel_grid(weight: torch.Tensor, groups: int = 2, nrow: int = 8,
                padding: int = 1) -> list[torch.Tensor]:
    """One (3, H, W) image in [0, 1] per tower: kernels [0, N/groups)
    are the first GPU's, the next N/groups the second's (Figure 3)."""
    w = normalise_kernels(weight)
    if len(w) % groups:
        raise ValueError(f"{len(w)} kernels do not split into {groups} "
                         f"towers")
    return [make_grid(part, nrow=nrow, padding=padding, pad_value=1.0)
            for part in w.chunk(groups)]


def colour_fraction(weight: torch.Tensor) -> torch.Tensor:
    """Share of each kernel's energy that is colour, not brightness.

    Split a kernel w (3, k, k) into its grey part g (the mean of its
    three colour planes, repeated in each) and the rest w - g. Returns
    ||w - g||^2 / ||w||^2 per kernel, (N,): 0 for a kernel that weighs
    R, G and B alike (colour-agnostic), 1 for one whose colour planes
    sum to zero everywhere (pure colour contrast). A kernel of
    independent random weights scores 2/3 on average.
    """
    w = _check_kernels(weight).double()
    grey = w.mean(dim=1, keepdim=True)  # (N, 1, k, k)
    colour = (w - grey).pow(2).sum(dim=(1, 2, 3))
    total = w.pow(2).sum(dim=(1, 2, 3)).clamp_min(1e-300)
    return (colour / total).float()


def colour_fraction_by_tower(weight: torch.Tensor, groups: int = 2
                             ) -> list[torch.Tensor]:
    """``colour_fraction`` of each tower's kernels, in tower order."""
    return list(colour_fraction(weight).chunk(groups))


def tower_gap_p_value(a: torch.Tensor, b: torch.Tensor,
                      permutations: int = 10_000, seed: int = 0) -> float:
    """How often chance alone gives a gap this large: the share of
    random splits of the kernels of both towers (``a`` and ``b``, one
    statistic per kernel) into two groups of the same sizes whose means
    differ by at least as much as the towers' do (a permutation test,
    two-sided; counting the observed split, so never 0)."""
    both = torch.cat([a, b]).double().flatten()
    observed = (a.double().mean() - b.double().mean()).abs()
    g = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(len(both), generator=g)
                         for _ in range(permutations)])  # (P, N)
    split = both[order]
    gaps = (split[:, :len(a)].mean(1) - split[:, len(a):].mean(1)).abs()
    hits = int((gaps >= observed - 1e-12).sum())
    return (hits + 1) / (permutations + 1)


def top_k(logits: torch.Tensor, k: int = 5
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, classes) of the k most probable classes per
    row, most probable first; each (B, k)."""
    if logits.dim() != 2:
        raise ValueError(f"expected (B, classes) logits, got "
                         f"{tuple(logits.shape)}")
    k = min(k, logits.shape[1])
    probs = logits.float().softmax(dim=1)
    return probs.topk(k, dim=1)


@torch.no_grad()
def penultimate_features(model: nn.Module, batches: Iterable,
                         device: str | torch.device = "cpu"
                         ) -> torch.Tensor:
    """The last hidden layer (fc7 after its ReLU) of every image.

    ``batches`` yields (B, 3, S, S) inputs, or (inputs, labels) pairs.
    Returns (N, 4096) on the CPU; the model is used in eval mode.
    """
    was_training = model.training
    model.eval()
    out = []
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        out.append(model.penultimate(x.to(device)).float().cpu())
    model.train(was_training)
    return torch.cat(out)


def nearest_neighbours(queries: torch.Tensor, bank: torch.Tensor,
                       k: int = 6, chunk: int = 256
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(distances, indices) of the k rows of ``bank`` closest to each
    query in Euclidean distance, closest first; each (Q, k).

    Rows are flattened, so images (N, 3, S, S) compare pixel by pixel.
    Float32 at least (a pixel bank in float64 would not fit in memory);
    ``chunk`` queries at a time keep the (chunk, N) distances small.
    """
    dtype = torch.promote_types(queries.dtype, torch.float32)
    q = queries.flatten(1).to(dtype)
    b = bank.flatten(1).to(dtype)
    if q.shape[1] != b.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} values per row, the "
                         f"bank {b.shape[1]}: compare like with like")
    if k > len(b):
        raise ValueError(f"k={k} neighbours asked from a bank of "
                         f"{len(b)} rows")
    values, indices = [], []
    for part in q.split(chunk):
        found = torch.cdist(part, b).topk(k, dim=1, largest=False)
        values.append(found.values)
        indices.append(found.indices)
    return torch.cat(values).float(), torch.cat(indices)


def neighbour_agreement(query_labels: torch.Tensor,
                        bank_labels: torch.Tensor,
                        indices: torch.Tensor) -> float:
    """Fraction of the neighbours that share their query's label."""
    same = bank_labels[indices] == query_labels[:, None]  # (Q, k)
    return same.double().mean().item()


def confident_mistakes(probs: torch.Tensor, labels: torch.Tensor,
                       k: int = 12) -> list[tuple[int, int, float]]:
    """The k wrong answers given with the most confidence, as (image
    index, predicted class, its probability), most confident first:
    where to look for what the errors have in common (§6.1)."""
    if probs.dim() != 2 or len(probs) != len(labels):
        raise ValueError(f"expected (N, classes) probabilities and N "
                         f"labels, got {tuple(probs.shape)} and "
                         f"{tuple(labels.shape)}")
    conf, pred = probs.max(1)
    wrong = (pred != labels).nonzero().flatten()
    order = wrong[conf[wrong].argsort(descending=True, stable=True)][:k]
    return [(int(i), int(pred[i]), float(conf[i])) for i in order]


def average_probabilities(runs: list[torch.Tensor]) -> torch.Tensor:
    """The ensemble of §6 (Table 2's averaged CNNs): the mean of the
    networks' (N, classes) probabilities for the same images."""
    if not runs or any(r.shape != runs[0].shape for r in runs):
        raise ValueError("average_probabilities needs one or more "
                         "(N, classes) tensors of the same shape")
    return torch.stack(runs).mean(0)
