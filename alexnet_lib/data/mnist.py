"""MNIST as uint8 tensors, padded to LeNet-5's 32x32 input.

Sources (found by ``locate.find_dataset("mnist")``): the four original
IDX files (``train-images-idx3-ubyte.gz`` ...), in a folder ``mnist``
or where torchvision's ``MNIST`` downloads them (``MNIST/raw``), or the
sample shipped in the package (``mnist.npz``).

LeCun et al. (1998, §III.A) centre each 28x28 digit in a 32x32 field,
so that strokes can reach the corners of the receptive fields of the
highest feature detectors: ``load_mnist`` pads 2 zero pixels on each
side by default (``pad=0`` keeps 28x28). The digits are white on
black (0 = background), as in the files. ``to_grey`` turns colour
images (CIFAR-10) into one channel for the same network.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from .cifar import CifarTensors
from .errors import DataLayoutError
from .files import balanced_subset
from .locate import find_dataset, mnist_kind

__all__ = ["load_mnist", "read_idx", "to_grey", "MNIST_CLASSES"]

MNIST_CLASSES = [str(d) for d in range(10)]
_IDX_TYPES = {0x08: np.uint8}  # MNIST uses unsigned bytes only
SPLIT_FILES = {"train": ("train-images-idx3-ubyte.gz",
                         "train-labels-idx1-ubyte.gz"),
               "test": ("t10k-images-idx3-ubyte.gz",
                        "t10k-labels-idx1-ubyte.gz")}


def read_idx(path: str | Path) -> np.ndarray:
    """One IDX file (gzipped or not) as a numpy array.

    Format: two zero bytes, a type byte (0x08 = unsigned byte), the
    number of dimensions, one big-endian 32-bit size per dimension,
    then the data, row-major.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or \
            raw[2] not in _IDX_TYPES:
        raise DataLayoutError(
            f"{path} is not an MNIST IDX file (its header is "
            f"{raw[:4].hex() or 'empty'}): replace it with a fresh copy "
            f"(`python -m alexnet_lib fetch mnist`)")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big")
                  for i in range(ndim))
    start = 4 + 4 * ndim
    data = np.frombuffer(raw, dtype=_IDX_TYPES[raw[2]], offset=start)
    if data.size != int(np.prod(shape)):
        raise DataLayoutError(
            f"{path} is truncated: its header promises {shape} values, "
            f"it holds {data.size}: replace it with a fresh copy "
            f"(`python -m alexnet_lib fetch mnist`)")
    return data.reshape(shape)


def load_mnist(root: str | Path | None = None, split: str = "train",
               download: bool | None = None, subset: int | None = None,
               pad: int = 2, profile: str | None = None) -> CifarTensors:
    """One split ("train" or "test") of MNIST: images (N, 1, 28 + 2 pad,
    28 + 2 pad) uint8, labels (N,) int64, classes "0" ... "9".

    ``root``, ``download``, ``profile``: as ``load_cifar10`` (the cpu
    and gpu profiles fetch a missing MNIST with torchvision).
    ``subset``: a class-balanced, deterministic first-N.
    """
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0 pixels, got {pad}")
    path = find_dataset("mnist", path=root, profile=profile,
                        download=download)
    if mnist_kind(path) == "sample":
        with np.load(path / "mnist.npz") as z:
            images = z[f"{split}_images"]
            labels = z[f"{split}_labels"]
    else:
        image_file, label_file = SPLIT_FILES[split]
        images, labels = read_idx(path / image_file), read_idx(
            path / label_file)
    if images.ndim != 3 or len(images) != len(labels):
        raise DataLayoutError(
            f"MNIST in {path}: {split} images {images.shape} and labels "
            f"{labels.shape} do not match: replace the files with a "
            f"fresh copy (`python -m alexnet_lib fetch mnist`)")
    x = torch.from_numpy(np.array(images, copy=True))[:, None]
    y = torch.from_numpy(labels.astype(np.int64))
    if subset is not None:
        keep = torch.tensor(balanced_subset(y, subset))
        x, y = x[keep], y[keep]
    if pad:
        x = torch.nn.functional.pad(x, (pad,) * 4)  # zeros = background
    return CifarTensors(x.contiguous(), y, list(MNIST_CLASSES), str(path))


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) uint8 RGB -> (N, 1, H, W) uint8 luma, rounded:
    Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601, PIL's "L" mode)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"to_grey needs (N, 3, H, W) RGB images, got "
                         f"{tuple(images.shape)}")
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    y = (images.to(torch.float32) * weights).sum(1, keepdim=True)
    return y.round_().clamp_(0, 255).to(torch.uint8)
