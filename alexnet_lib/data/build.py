"""build_loaders(data, batch_size): the paper's input pipeline.

The data layer receives the data settings (``DataConfig``) and the three
numbers it needs from the rest of a run: the batch size (§5), the seed of
the batch order and the profile (which decides whether a missing data
set may be downloaded).

CIFAR-10: decoded once into memory, augmented in batches (CifarLoader).
ImageNet format: ImageNetFolder, or ShardFolder for the shards that
prepare-shards writes (sources.py), + the paper's per-image transforms
in a DataLoader driven by a ResumableBatchSampler (or, with data.decode =
"batched", the same images decoded in batches on the device). All
resume exactly from ``set_epoch(epoch, start_step)`` and split every
global batch across ranks, so 2 processes see what 1 process sees.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from ..config import ConfigError, DataConfig
from .cifar import CifarTensors, load_cifar10
from .cifar_loader import CifarLoader
from .jpeg_batch import batched_loaders
from .sampler import ResumableBatchSampler, ResumableLoader
from .sources import open_train, open_val
from .transforms import (IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC,
                         TenCrop, compute_mean_image, compute_rgb_pca,
                         preset_ten_crop, preset_train, preset_val)


def build_loaders(data: DataConfig, batch_size: int, seed: int = 0,
                  profile: str = "gpu", rank: int = 0, world_size: int = 1,
                  device: str | torch.device = "cpu"):
    """(train_loader, val_loader, info) for ``data``.

    train_loader: ``set_epoch(epoch, start_step=0)``, ``len()`` = global
    batches per epoch, in an order drawn from ``seed``; rank r gets its
    slice of each global batch of ``batch_size``. val_loader: the whole
    validation set, in order, on every rank. ``device``: where CIFAR
    batches are made, and ImageNet batches with ``data.decode ==
    "batched"``. The settings are taken as checked (``fit`` runs
    ``preflight.check_config`` once).
    """
    if data.dataset == "cifar10":
        return _cifar_loaders(data, batch_size, seed, profile, rank,
                              world_size, device)
    return _imagenet_loaders(data, batch_size, seed, profile, rank,
                             world_size, device)


def select_mean(kind: str, mean_image: torch.Tensor) -> torch.Tensor:
    """§2 "mean activity ... from each pixel": data.mean picks which."""
    if kind == "pixel":
        return mean_image  # (3, H, W), Caffe's mean image
    if kind == "channel":
        # DEVIATION: (when chosen) VGG's per-channel mean RGB value.
        return mean_image.mean((1, 2), keepdim=True)  # (3, 1, 1)
    return torch.zeros(3, 1, 1)


def _cifar_data(d: DataConfig, profile: str):
    train = load_cifar10(d.root, "train", d.download, d.train_subset,
                         d.on_corrupt, profile)
    test = load_cifar10(d.root, "test", d.download, d.val_subset,
                        d.on_corrupt, profile)
    crop = d.image_size if d.image_size < 32 else None
    mean = select_mean(d.mean, compute_mean_image(train.images))
    return train, test, crop, mean


def _cifar_loaders(d: DataConfig, batch: int, seed: int, profile: str,
                   rank: int, world_size: int, device):
    train, test, crop, mean = _cifar_data(d, profile)
    pca = compute_rgb_pca(train.images) if d.pca_lighting > 0 else None
    train_loader = CifarLoader(
        train.images, train.labels, batch, shuffle=True, seed=seed,
        crop=crop, flip=d.flip, pca_std=d.pca_lighting, pca=pca,
        mean=mean, device=device, rank=rank, world_size=world_size,
        random_crop=d.random_crop)
    val_loader = CifarLoader(test.images, test.labels, batch,
                             shuffle=False, crop=crop, mean=mean,
                             device=device, train=False)
    return train_loader, val_loader, _info(
        "cifar10", train, test, train.classes, crop or 32, mean, pca,
        train.source, lambda: train.skipped + test.skipped)


def _imagenet_data(d: DataConfig, profile: str):
    train = open_train(d, profile)  # a folder or shards
    # The mean image of the (subset of the) training set at resize x
    # resize, cached; subtracted before cropping, as Caffe does.
    mean_image = compute_mean_image(train, d.resize,
                                    num_workers=d.num_workers)
    return train, select_mean(d.mean, mean_image)


def _imagenet_loaders(d: DataConfig, batch: int, seed: int, profile: str,
                      rank: int, world_size: int, device="cpu"):
    if d.decode not in ("pil", "batched"):
        raise ConfigError(f"data.decode must be 'pil' or 'batched', got "
                          f"{d.decode!r}")
    train, mean = _imagenet_data(d, profile)
    # Pixel-wise steps commute with crop and mirror, so subtracting the
    # 256x256 mean image first is exact (Caffe crops the mean with the
    # image).
    # DEVIATION: PCA lighting uses the published ImageNet eigenpairs
    # (fb.resnet.torch) instead of a pass over our training
    # set; the augmentation notebook recomputes and compares them.
    pca = (IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC)
    sampler = ResumableBatchSampler(len(train), batch, shuffle=True,
                                    seed=seed, rank=rank,
                                    world_size=world_size)
    if d.decode == "batched":  # workers read files, the device decodes
        val = open_val(d, train)
        train_loader, val_loader = batched_loaders(
            d, batch, train, val, mean, pca, sampler, device)
    else:
        train.transform = preset_train(d, mean, pca)
        val = open_val(d, train, preset_val(d, mean))
        workers = d.num_workers
        pin = torch.cuda.is_available()
        train_loader = ResumableLoader(DataLoader(
            train, batch_sampler=sampler, num_workers=workers,
            pin_memory=pin, persistent_workers=workers > 0), sampler)
        val_loader = DataLoader(val, batch_size=batch, shuffle=False,
                                num_workers=workers, pin_memory=pin)
    return train_loader, val_loader, _info(
        "imagenet", train, val, train.classes, d.image_size, mean,
        pca if d.pca_lighting > 0 else None, str(train.root),
        lambda: train.skipped + val.skipped)


def _info(name, train, val, classes, input_size, mean, pca, source,
          corrupt_files) -> dict[str, Any]:
    return {"dataset": name, "num_classes": len(classes),
            "classes": list(classes), "n_train": len(train),
            "n_val": len(val), "input_size": input_size, "mean": mean,
            "pca": pca, "source": source,
            "corrupt_files": corrupt_files}  # call it: list of paths


class CifarTenCrop:
    """(x (B, 10, 3, S, S), y) over the CIFAR test split (§4.1 test)."""

    def __init__(self, data: CifarTensors, crop: int, mean: torch.Tensor,
                 batch_size: int):
        self.data, self.mean, self.batch_size = data, mean, batch_size
        self.ten_crop = TenCrop(crop)

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def __iter__(self):
        for i in range(0, len(self.data), self.batch_size):
            x = self.data.images[i:i + self.batch_size].float() - self.mean
            yield self.ten_crop(x), self.data.labels[i:i + self.batch_size]


def build_ten_crop_loader(d: DataConfig, batch: int, profile: str = "gpu"):
    """Validation batches of ten patches per image (§4.1 test time)."""
    if d.dataset == "cifar10":
        _, test, crop, mean = _cifar_data(d, profile)
        if crop is None:
            raise ConfigError(
                "ten-crop testing needs patches smaller than the 32x32 "
                "CIFAR images: set data.image_size < 32 (24 as in "
                "cuda-convnet's CIFAR nets)")
        return CifarTenCrop(test, crop, mean, batch)
    train, mean = _imagenet_data(d, profile)
    val = open_val(d, train, preset_ten_crop(d, mean))
    return DataLoader(val, batch_size=batch, shuffle=False,
                      num_workers=d.num_workers,
                      pin_memory=torch.cuda.is_available())
