"""Resume-exact sampling: every random choice is a function of seeds.

The permutation of an epoch comes from (seed, epoch); the augmentation
of a sample from (seed, epoch, sample index) for the folder datasets, or
(seed, epoch, step) for the in-memory CIFAR loader. Nothing depends on
the number of worker processes, on the rank, or on what ran before, so
a run resumed at step k sees exactly the batches k, k+1, ... it would
have seen, and 2 processes see exactly what 1 process sees.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Sampler

_MASK = (1 << 64) - 1


def mix_seed(*values: int) -> int:
    """A 63-bit seed from integers (SplitMix64 mixing of each value).

    Different tuples give unrelated seeds, so the streams of
    (seed, epoch) and (seed, epoch, i) never overlap in practice.
    """
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = ((h ^ (int(v) & _MASK)) + 0x9E3779B97F4A7C15) & _MASK
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK
        h ^= h >> 31
    return h >> 1  # torch.Generator.manual_seed takes < 2**63 everywhere


def generator_for(*values: int) -> torch.Generator:
    """A CPU torch.Generator seeded from ``mix_seed(*values)``."""
    return torch.Generator().manual_seed(mix_seed(*values))


def apply_seeded(transform, img, seed: int | None):
    """``transform(img)`` with its random choices fixed by ``seed``.

    A generator-aware transform (SeededCompose) gets its own generator;
    a plain torchvision one draws from the global RNG, seeded inside a
    fork so the caller's RNG stream is left as it was. None: unseeded.
    """
    if seed is None:
        return transform(img)
    if getattr(transform, "uses_generator", False):
        return transform(img, generator=torch.Generator().manual_seed(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(img)


def epoch_permutation(n: int, seed: int, epoch: int,
                      shuffle: bool = True) -> torch.Tensor:
    """The sample order of one epoch, (n,) int64; identity if no shuffle."""
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=generator_for(seed, epoch))


def num_steps(n: int, batch_size: int, drop_last: bool) -> int:
    """Global batches per epoch."""
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def rank_slice(size: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous part of a global batch of ``size``.

    A full batch splits into equal parts; a short last batch splits like
    ``numpy.array_split`` (part sizes differ by at most one).
    """
    q, r = divmod(size, world_size)
    start = rank * q + min(rank, r)
    return slice(start, start + q + (rank < r))


def check_world(batch_size: int, rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, "
                         f"world_size={world_size}")
    if batch_size % world_size:
        raise ValueError(
            f"the global batch size {batch_size} is not divisible by the "
            f"number of processes {world_size}: every process must get the "
            f"same share. Choose a batch size that is a multiple of "
            f"{world_size} (paper §5: 128) or another number of processes.")


class ResumableBatchSampler(Sampler):
    """Yields this rank's part of every global batch as (index, seed).

    The dataset receives ``(index, seed)`` and seeds its augmentation
    with ``seed = mix_seed(seed, epoch, index)``: the same sample gets the
    same crop, flip and colour noise whatever the workers or ranks.
    ``set_epoch(epoch, start_step)`` skips the first ``start_step``
    batches without loading them; it holds until the next call.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False, rank: int = 0,
                 world_size: int = 1):
        check_world(batch_size, rank, world_size)
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.seed, self.drop_last = seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        if not 0 <= start_step <= len(self):
            raise ValueError(f"start_step must be in [0, {len(self)}], "
                             f"got {start_step}")
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return num_steps(self.n, self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = epoch_permutation(self.n, self.seed, self.epoch,
                                  self.shuffle)
        for step in range(self.start_step, len(self)):
            ids = order[step * self.batch_size:(step + 1) * self.batch_size]
            ids = ids[rank_slice(len(ids), self.rank, self.world_size)]
            yield [(i, mix_seed(self.seed, self.epoch, i))
                   for i in ids.tolist()]


class ResumableLoader:
    """A DataLoader over a ResumableBatchSampler, with set_epoch/len."""

    def __init__(self, loader: DataLoader, sampler: ResumableBatchSampler):
        self.loader, self.sampler = loader, sampler
        self.dataset = loader.dataset
        self.batch_size = sampler.batch_size // sampler.world_size

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.sampler.set_epoch(epoch, start_step)

    def __len__(self) -> int:  # batches per epoch (global steps)
        return len(self.sampler)

    def __iter__(self):
        return iter(self.loader)
