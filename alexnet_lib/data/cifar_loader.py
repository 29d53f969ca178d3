"""CifarLoader: in-memory CIFAR batches with batched augmentation.

At 32x32, per-image PIL decoding and transforms in a DataLoader are the
bottleneck on a few CPU cores. Here the whole split is one uint8 tensor;
each batch is gathered, mean-subtracted, colour-shifted, cropped and
mirrored with a handful of tensor operations (no PIL, no DataLoader),
on the CPU or on the GPU (``device``).
"""
from __future__ import annotations

import torch

from .sampler import (check_world, epoch_permutation, generator_for,
                      num_steps, rank_slice)
from .transforms import PCALighting, compute_rgb_pca


class CifarLoader:
    """Batches (x float32 (B, C, S, S), y int64 (B,)) of in-memory images
    (C = 3, RGB, or 1, grey).

    Augmentation (§4.1, when ``train``): a random ``crop`` x ``crop``
    patch (``random_crop``; the centre otherwise), a mirror with p = 0.5
    (``flip``) and PCA colour noise with std ``pca_std`` (``pca`` =
    (eigval, eigvec) for [0, 1] RGB; computed from ``images`` if None).
    Then ``mean`` (a (3, H, W) mean image or (3,) channel means, on the
    0..255 scale) is subtracted and the result divided by ``std``.
    ``train=False``: no mirror, no colour noise, centre crop.

    Randomness: the order of epoch e comes from (seed, e) and the
    augmentation of global batch s from (seed, e, s), drawn for the
    whole global batch; with ``world_size`` > 1, rank r keeps its
    contiguous slice, so 2 processes see exactly what 1 process sees,
    and ``set_epoch(e, start_step=k)`` resumes at batch k exactly.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor,
                 batch_size: int, shuffle: bool = True, seed: int = 0,
                 crop: int | None = None, flip: bool = False,
                 pca_std: float = 0.0, pca=None, mean=None, std=None,
                 drop_last: bool = False, device="cpu", rank: int = 0,
                 world_size: int = 1, train: bool = True,
                 random_crop: bool = True, value_range: float = 255.0):
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be (N, 3, H, W) or (N, 1, H, "
                             f"W), got {tuple(images.shape)}")
        if pca_std > 0 and images.shape[1] != 3:
            raise ValueError("PCA colour noise (pca_std > 0) needs RGB "
                             "images: use pca_std=0 for grey images")
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} "
                             f"labels")
        height, width = images.shape[-2:]
        if crop is not None and not 1 <= crop <= min(height, width):
            raise ValueError(f"crop must be in [1, {min(height, width)}] "
                             f"for {height}x{width} images, got {crop}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        check_world(batch_size, rank, world_size)
        self.device = torch.device(device)
        self.images = images.to(self.device)  # stays uint8: 4x less memory
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.crop, self.flip, self.pca_std = crop, flip, pca_std
        self.random_crop, self.train = random_crop, train
        self.drop_last, self.rank, self.world_size = (
            drop_last, rank, world_size)
        self.mean = self._as_image_stat(mean)
        self.std = self._as_image_stat(std)
        self.lighting = None
        if train and pca_std > 0:
            eigval, eigvec = (compute_rgb_pca(images, value_range)
                              if pca is None else pca)
            self.lighting = PCALighting(pca_std, eigval, eigvec,
                                        value_range)
        self.epoch, self.start_step = 0, 0

    def _as_image_stat(self, value) -> torch.Tensor | None:
        """None, a scalar, (C,) or (C, H, W) -> broadcastable to a batch."""
        if value is None:
            return None
        value = torch.as_tensor(value, dtype=torch.float32)
        if value.dim() == 1:
            value = value.view(-1, 1, 1)
        return value.to(self.device)

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Next iteration: epoch ``epoch`` from global batch start_step."""
        if not 0 <= start_step <= len(self):
            raise ValueError(f"start_step must be in [0, {len(self)}], "
                             f"got {start_step}")
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return num_steps(len(self.images), self.batch_size, self.drop_last)

    def __iter__(self):
        order = epoch_permutation(len(self.images), self.seed, self.epoch,
                                  self.shuffle)
        for step in range(self.start_step, len(self)):
            ids = order[step * self.batch_size:(step + 1) * self.batch_size]
            params = self.draw(len(ids), step)
            part = rank_slice(len(ids), self.rank, self.world_size)
            yield self.make_batch(ids[part],
                                  *(p[part] for p in params))

    def draw(self, size: int, step: int):
        """(top, left, mirror, alpha) for a global batch of ``size``."""
        g = generator_for(self.seed, self.epoch, step)
        height, width = self.images.shape[-2:]
        room_h = height - (self.crop or height)  # crop positions - 1
        room_w = width - (self.crop or width)
        if self.train and self.random_crop and self.crop:
            top = torch.randint(room_h + 1, (size,), generator=g)
            left = torch.randint(room_w + 1, (size,), generator=g)
        else:
            top = torch.full((size,), room_h // 2)
            left = torch.full((size,), room_w // 2)
        mirror = torch.zeros(size, dtype=torch.bool)
        if self.train and self.flip:
            mirror = torch.rand(size, generator=g) < 0.5
        alpha = torch.zeros(size, 3)
        if self.lighting is not None:
            alpha = torch.randn(size, 3, generator=g) * self.pca_std
        return top, left, mirror, alpha

    def make_batch(self, ids, top, left, mirror, alpha):
        """Gather images ``ids`` and apply the drawn augmentation."""
        dev = self.device
        ids = ids.to(dev)
        n = len(ids)
        # index_select on (N, 3*H*W) rows: ~50x faster than images[ids].
        x = self.images.view(len(self.images), -1).index_select(0, ids)
        # A fresh float copy (B, 3, H, W), so in-place steps are safe.
        x = x.view(n, *self.images.shape[1:]).to(torch.float32, copy=True)
        if self.mean is not None:
            x.sub_(self.mean)  # per pixel, before cropping (as Caffe)
        if self.lighting is not None:
            x.add_(self.lighting.noise(alpha.to(dev))[:, :, None, None])
        if self.std is not None:
            x.div_(self.std)
        if self.crop is not None:
            # A view of every crop position: (B, 3, H-S+1, W-S+1, S, S);
            # pick each image's (top, left) -> (B, 3, S, S).
            windows = x.unfold(2, self.crop, 1).unfold(3, self.crop, 1)
            b = torch.arange(n, device=dev)
            x = windows[b, :, top.to(dev), left.to(dev)]
        if mirror.any():
            x = torch.where(mirror.to(dev)[:, None, None, None],
                            x.flip(-1), x)
        return x, self.labels[ids]
